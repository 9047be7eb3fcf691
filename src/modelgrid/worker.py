"""Composition root of an engine worker: ``create_worker_app(engine_factory)``, the app of
``modelgrid engine``, ONE model replica over the OpenAI API.

A region runs replicas on other machines with it, and a gateway reaches them as upstreams
(``engines.upstream``); ``modelgrid serve`` runs one per embedded model as its supervised
engine process (``engines.process``). It is deliberately lean: no database, no keys, no
metering — the gateway in front authenticates, admits and meters. An optional shared token
(``--token``) must then come as ``Authorization: Bearer <token>``.

It mounts the gateway's own model-API routers (``api/routers/openai.py``,
``api/routers/completions.py``: same validation, SSE framing, error events and disconnect
handling; ``api/routers/tokenize.py``: the ``/tokenize`` a gateway's engines call) over its
``WorkerState``, with ``ChatService`` / ``CompletionService`` metered by a
``NullMeter`` (admits everything, records nothing); and its own routes: the embedding calls
(``api/routers/engine_rpc.py``) and the probes and metrics with the replica's load
(``api/routers/worker_health.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.trace import SpanKind

from modelgrid import __version__
from modelgrid.api import errors
from modelgrid.api.deps import provide_model_api
from modelgrid.api.middleware import RequestContext
from modelgrid.api.routers import completions, engine_rpc, openai, tokenize, worker_health
from modelgrid.api.worker_state import InFlight, WorkerState
from modelgrid.config import ObservabilitySettings
from modelgrid.engines.base import Engine
from modelgrid.engines.process import die_with_parent
from modelgrid.serving.chat import ChatService
from modelgrid.serving.completions import CompletionService
from modelgrid.serving.meter import NullMeter
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.serving.telemetry import GenAiTelemetry, otlp_telemetry

log = logging.getLogger("modelgrid.worker")


def create_worker_app(
    engine_factory: Callable[[], Engine],
    *,
    region: str = "local",
    token: str | None = None,
    parent_pid: int | None = None,
    observability: ObservabilitySettings | None = None,
    genai: GenAiTelemetry | None = None,
) -> FastAPI:
    """The worker app for the replica ``engine_factory`` builds (in a thread, at start-up:
    loading weights may take a while; ``/health/live`` answers meanwhile).

    Args:
        engine_factory: Builds the replica (blocking is fine).
        region: Label for logs and ``/health/ready``.
        token: Bearer token callers must send; ``None`` or empty: no check.
        parent_pid: The supervising gateway's pid: the worker exits when it dies
            (``engines.process.die_with_parent``).
        observability: With ``otlp_endpoint`` set, the worker's GenAI spans (children of
            the gateway's, through ``traceparent``) and metrics go there over OTLP.
        genai: OpenTelemetry GenAI instruments to use instead (tests).
    """
    built_genai = None
    if genai is None and observability is not None and observability.otlp_endpoint:
        genai = built_genai = otlp_telemetry(observability, span_kind=SpanKind.SERVER)
    metrics = Metrics(genai=genai)

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
        provide_model_api(app, state)
        loader = asyncio.create_task(_start(state), name="start-replica")
        try:
            yield
        finally:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            await engine.aclose()
            if built_genai is not None:
                await asyncio.to_thread(built_genai.shutdown)

    off = False  # FastAPI's OpenTelemetry hooks: per-request cost, nothing configured here
    app = FastAPI(
        title="modelgrid engine",
        version=__version__,
        lifespan=lifespan,
        telemetry={"tracing": off, "metrics": off, "logs": off},
    )
    errors.install(app)
    app.include_router(openai.router)  # the hot routes first: FastAPI matches included
    app.include_router(completions.router)  # routers in turn, a few µs each per request
    app.include_router(tokenize.router)  # the gateway's engines tokenize through it
    app.include_router(worker_health.router)
    app.include_router(engine_rpc.router)
    app.add_middleware(InFlight)
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


__all__ = ["create_worker_app"]
