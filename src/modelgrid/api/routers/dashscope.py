"""DashScope's native text-generation route.

``POST /api/v1/services/aigc/text-generation/generation``
(https://help.aliyun.com/zh/model-studio/qwen-api-reference): JSON by default; server-sent
events when the request says ``X-DashScope-SSE: enable`` (or ``Accept: text/event-stream``).
Errors known before generation are plain JSON in DashScope's shape (``api/errors.py`` picks
that rendering for every path under ``/api/v1/``); a failure after the first byte becomes one
``event:error`` event, never a silent cut.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from modelgrid.api.body import json_body
from modelgrid.api.deps import CallDep
from modelgrid.api.disconnect import unless_disconnected
from modelgrid.api.sse import SSEResponse
from modelgrid.core.errors import ModelgridError
from modelgrid.protocol.dashscope.embeddings import TextEmbeddingRequest
from modelgrid.protocol.dashscope.embeddings import input_texts as embeddings_input
from modelgrid.protocol.dashscope.embeddings import response_dict as embedding_response
from modelgrid.protocol.dashscope.errors import INTERNAL_ERROR, error_body, error_code
from modelgrid.protocol.dashscope.models import GenerationRequest, ResultFormat
from modelgrid.protocol.dashscope.sse import EventWriter
from modelgrid.serving.dashscope import TextGenerationService
from modelgrid.serving.generation import Generation

log = logging.getLogger("modelgrid.api")
router = APIRouter(prefix="/api/v1")


def wants_sse(request: Request) -> bool:
    """DashScope streams when ``X-DashScope-SSE: enable`` or ``Accept: text/event-stream``."""
    sse_header = request.headers.get("x-dashscope-sse", "").strip().lower()
    return sse_header == "enable" or "text/event-stream" in request.headers.get("accept", "")


@router.post("/services/aigc/text-generation/generation")
async def generation(request: Request, call: CallDep) -> Response:
    body = await json_body(request, GenerationRequest)
    service = call.state.text_generation
    streamed = wants_sse(request)
    gen = await service.open(call.principal, body, call.ctx, stream=streamed)
    fmt = body.parameters.result_format
    if not streamed:
        done = await unless_disconnected(request, service.complete(gen, fmt))
        return done if isinstance(done, Response) else JSONResponse(done)
    writer = EventWriter()
    request_id = gen.request.request_id
    return SSEResponse(
        _sse(service, gen, fmt, body.parameters.incremental_output, writer),
        cut=lambda exc: cut_event(writer, request_id, exc),
    )


def cut_event(writer: EventWriter, request_id: str, exc: ModelgridError) -> bytes:
    """The ``event:error`` that ends a stream after its first event (numbered after it)."""
    return writer.error(exc.status, error_body(request_id, error_code(exc), exc.message))


async def _sse(
    service: TextGenerationService,
    gen: Generation,
    fmt: ResultFormat,
    incremental: bool,
    writer: EventWriter,
) -> AsyncIterator[bytes]:
    request_id = gen.request.request_id
    events = service.events(gen, fmt, incremental)
    try:
        async for data in events:
            yield writer.result(data)
    except ModelgridError as exc:
        yield cut_event(writer, request_id, exc)
    except Exception:
        log.exception("generation failed mid-stream")
        message = "The server had an error while generating."
        yield writer.error(500, error_body(request_id, INTERNAL_ERROR, message))
    finally:
        await events.aclose()


__all__ = ["cut_event", "router", "wants_sse"]


@router.post("/services/embeddings/text-embedding/text-embedding")
async def text_embedding(request: Request, call: CallDep) -> JSONResponse:
    """DashScope's native embeddings (``protocol.dashscope.embeddings``), on the same
    service, metering and limits as ``/v1/embeddings``."""
    body = await json_body(request, TextEmbeddingRequest)
    ctx = call.ctx
    vectors, tokens = await call.state.embeddings.embed(
        call.principal,
        body.model,
        embeddings_input(body),
        ctx,
        single=isinstance(body.input.texts, str),
        dimensions=body.parameters.dimension,
        dimensions_param="parameters.dimension",
    )
    return JSONResponse(embedding_response(ctx.request_id, vectors, tokens))
