"""The worker app of ``modelgrid engine``: ONE model replica over the OpenAI API.

A region runs replicas on other machines with it, and a gateway reaches them as upstreams
(``engines.upstream``). It is deliberately lean: no database, no keys, no metering — the
gateway in front authenticates, admits and meters. An optional shared token (``--token``)
must then come as ``Authorization: Bearer <token>``.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``
(JSON, or SSE with ``stream_options.include_usage``) for a generation model;
``/internal/embeddings…`` for an embedding model (the calls of the gateway that supervises
this worker, ``engines.process_embedding``); ``GET /health/live``, ``GET /health/ready`` (with the
replica's load: ``queue_depth`` waiting, ``running`` generating; cheap enough to poll for
load- and prefix-aware routing), ``GET /metrics`` (Prometheus, the same gauges).

Requests go through the gateway's own ``ChatService`` / ``CompletionService`` (same
validation, rendering, streaming and error events), metered by a ``NullMeter`` (admits
everything, records nothing).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from modelgrid import __version__
from modelgrid.api import errors
from modelgrid.api.body import json_body
from modelgrid.api.deps import ContextDep, bearer_token
from modelgrid.api.disconnect import unless_disconnected
from modelgrid.api.middleware import RequestContext
from modelgrid.api.sse import SSEResponse
from modelgrid.core.errors import (
    AuthenticationError,
    ModelgridError,
    NotFoundError,
    ServiceUnavailableError,
)
from modelgrid.engines.base import Engine
from modelgrid.engines.embedding import EmbeddingEngine
from modelgrid.engines.process import die_with_parent
from modelgrid.engines.process_embedding import INTERNAL
from modelgrid.engines.upstream import PROMPT_TOKENS_HEADER
from modelgrid.protocol.engine_rpc import TextsIn, TokenIdsIn
from modelgrid.protocol.openai import sse
from modelgrid.protocol.openai.completions import CompletionRequest
from modelgrid.protocol.openai.errors import error_body
from modelgrid.protocol.openai.models import ChatCompletionRequest
from modelgrid.serving.chat import ChatService
from modelgrid.serving.completions import CompletionService
from modelgrid.serving.meter import NullMeter
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.service import Principal

log = logging.getLogger("modelgrid.worker")

WORKER_PRINCIPAL = Principal(key_id="worker", workspace_id="worker", role="tenant", name="worker")


@dataclass
class WorkerState:
    """The worker's replica and its load.

    Attributes:
        engine: The replica (started by the lifespan, in the background).
        region: Label for logs and ``/health/ready``.
        token: The bearer token callers must send (``None``: no check).
        in_flight: Chat and text-completion requests being answered (waiting or generating).
    """

    engine: Engine
    models: ModelRegistry
    chat: ChatService
    completions: CompletionService
    metrics: Metrics
    region: str
    token: str | None
    in_flight: int = 0
    load_error: str | None = None

    @property
    def queue_depth(self) -> int:
        return self.engine.queue_depth

    @property
    def running(self) -> int:
        return max(0, self.in_flight - self.engine.queue_depth)

    def load(self) -> dict[str, Any]:
        return {"queue_depth": self.queue_depth, "running": self.running}


async def _state(request: Request) -> WorkerState:
    state: WorkerState = request.app.state.worker
    return state


async def _caller(request: Request) -> WorkerState:
    """The state, after checking the bearer token when the worker has one.

    Raises:
        AuthenticationError: missing or wrong token (401).
    """
    state: WorkerState = request.app.state.worker
    if state.token is not None:
        given = bearer_token(request) or ""
        if not hmac.compare_digest(given.encode(), state.token.encode()):
            raise AuthenticationError("Missing or incorrect worker token.")
    return state


StateDep = Annotated[WorkerState, Depends(_state)]
CallerDep = Annotated[WorkerState, Depends(_caller)]


def create_worker_app(
    engine_factory: Callable[[], Engine],
    *,
    region: str = "local",
    token: str | None = None,
    parent_pid: int | None = None,
) -> FastAPI:
    """The worker app for the replica ``engine_factory`` builds (in a thread, at start-up:
    loading weights may take a while; ``/health/live`` answers meanwhile).

    Args:
        engine_factory: Builds the replica (blocking is fine).
        region: Label for logs and ``/health/ready``.
        token: Bearer token callers must send; ``None`` or empty: no check.
        parent_pid: The supervising gateway's pid: the worker exits when it dies
            (``engines.process.die_with_parent``).
    """
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if parent_pid is not None:
            die_with_parent(parent_pid)
        engine = await asyncio.to_thread(engine_factory)
        models = ModelRegistry()
        state = WorkerState(
            engine=engine,
            models=models,
            chat=ChatService(models, NullMeter(), metrics),
            completions=CompletionService(models, NullMeter(), metrics),
            metrics=metrics,
            region=region,
            token=token or None,
        )
        metrics.watch_queue(engine.card.model_id, lambda: engine.queue_depth)
        app.state.worker = state
        loader = asyncio.create_task(_start(state), name="start-replica")
        try:
            yield
        finally:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            await engine.aclose()

    off = False  # FastAPI's OpenTelemetry hooks: per-request cost, nothing configured here
    app = FastAPI(
        title="modelgrid engine",
        version=__version__,
        lifespan=lifespan,
        telemetry={"tracing": off, "metrics": off, "logs": off},
    )
    errors.install(app)
    _routes(app)
    app.add_middleware(_InFlight)
    app.add_middleware(RequestContext, metrics=metrics)
    return app


async def _start(state: WorkerState) -> None:
    try:
        await state.engine.start()
        state.models.add(state.engine)
        log.warning("replica of %s ready (region %s)", state.engine.card.model_id, state.region)
    except Exception as exc:
        state.load_error = str(exc)
        log.error("starting the replica failed: %s", exc)


def _routes(app: FastAPI) -> None:
    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready(state: StateDep) -> JSONResponse:
        card = state.engine.card
        body: dict[str, Any] = {
            "model": card.model_id,
            "region": state.region,
            **state.load(),
        }
        if state.models.ready:
            return JSONResponse({"status": "ready", **body})
        if state.load_error:
            return JSONResponse({"status": "failed", "error": state.load_error, **body}, 503)
        return JSONResponse({"status": "loading", **body}, 503)

    @app.get("/metrics")
    async def metrics(state: StateDep) -> Response:
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get("/v1/models")
    async def list_models(state: CallerDep) -> dict[str, Any]:
        return {"object": "list", "data": [_model_obj(c) for c in state.models.cards()]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, state: CallerDep, ctx: ContextDep) -> Response:
        body = await json_body(request, ChatCompletionRequest)
        gen = await state.chat.open(WORKER_PRINCIPAL, body, ctx)
        ctx.response_headers[PROMPT_TOKENS_HEADER] = str(gen.usage.prompt_tokens)
        return await _answer(
            request,
            body,
            lambda: state.chat.complete(gen),
            lambda usage: state.chat.chunks(gen, usage),
        )

    @app.get(INTERNAL)
    async def embedding_facts(state: CallerDep) -> dict[str, Any]:
        """The embedding model's facts (``engines.process_embedding``)."""
        engine = _embedder(state)
        return {
            "model": engine.card.model_id,
            "dimensions": engine.dimensions,
            "max_input_tokens": engine.max_input_tokens,
        }

    @app.post(f"{INTERNAL}/count")
    async def embedding_count(request: Request, state: CallerDep) -> dict[str, Any]:
        body = await json_body(request, TextsIn)
        return {"counts": await _embedder(state).count_tokens(body.texts)}

    @app.post(f"{INTERNAL}/decode")
    async def embedding_decode(request: Request, state: CallerDep) -> dict[str, Any]:
        body = await json_body(request, TokenIdsIn)
        return {"texts": await _embedder(state).decode(body.token_ids)}

    @app.post(f"{INTERNAL}/embed")
    async def embedding_embed(request: Request, state: CallerDep) -> dict[str, Any]:
        body = await json_body(request, TextsIn)
        result = await _embedder(state).embed(body.texts)
        vectors = [base64.b64encode(v).decode("ascii") for v in result.vectors]
        return {"dimensions": result.dimensions, "vectors": vectors}

    @app.post("/v1/completions")
    async def completions(request: Request, state: CallerDep, ctx: ContextDep) -> Response:
        """Text completions of the same replica (gateways route ``/v1/completions`` here)."""
        body = await json_body(request, CompletionRequest)
        run = await state.completions.open(WORKER_PRINCIPAL, body, ctx)
        ctx.response_headers[PROMPT_TOKENS_HEADER] = str(run.usage.prompt_tokens)
        return await _answer(
            request,
            body,
            lambda: state.completions.complete(run),
            lambda usage: state.completions.chunks(run, usage),
        )


def _embedder(state: WorkerState) -> EmbeddingEngine:
    """The worker's embedding engine, once loaded.

    Raises:
        NotFoundError: the worker serves a generation model.
        ServiceUnavailableError: still loading.
    """
    engine = state.engine
    if not isinstance(engine, EmbeddingEngine):
        raise NotFoundError("This engine worker serves no embedding model.")
    if not state.models.ready:
        raise ServiceUnavailableError("The embedding model is still loading.")
    return engine


async def _answer(
    request: Request,
    body: ChatCompletionRequest | CompletionRequest,
    complete: Callable[[], Awaitable[dict[str, Any]]],
    chunks: Callable[[bool], AsyncGenerator[dict[str, Any], None]],
) -> Response:
    """JSON, or SSE when the body asks to stream (``stream_options.include_usage`` adds the
    usage chunk). A gateway that gives up on a JSON answer (its client left) closes the
    connection: the generation stops at once."""
    if not body.stream:
        done = await unless_disconnected(request, complete())
        return done if isinstance(done, Response) else JSONResponse(done)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return SSEResponse(_sse(chunks(include_usage)))


class _InFlight:
    """Pure ASGI: counts generation requests (chat and text completions) from arrival until
    their response has ended (so a stream counts until its last byte) in
    ``WorkerState.in_flight``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/completions"):
            await self.app(scope, receive, send)
            return
        state: WorkerState = scope["app"].state.worker
        state.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            state.in_flight -= 1


def _model_obj(card: Any) -> dict[str, Any]:
    return {
        "id": card.model_id,
        "object": "model",
        "created": card.created,
        "owned_by": card.owned_by,
        "context_length": card.context_length,
    }


async def _sse(chunks: AsyncGenerator[dict[str, Any], None]) -> AsyncIterator[bytes]:
    """SSE bytes; a failure after the first byte becomes an error event (no ``[DONE]``)."""
    try:
        async for chunk in chunks:
            yield sse.event(chunk)
        yield sse.DONE
    except ModelgridError as exc:
        yield sse.event(error_body(exc.message, exc.type, exc.param, exc.code))
    except Exception:
        log.exception("generation failed")
        yield sse.event(
            error_body(
                "The server had an error while generating.", "server_error", None, "internal_error"
            )
        )
    finally:
        await chunks.aclose()


__all__ = ["WORKER_PRINCIPAL", "WorkerState", "create_worker_app"]
