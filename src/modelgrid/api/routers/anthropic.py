"""Anthropic's Messages API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``
(``protocol.anthropic``, ``serving.messages``; see docs/anthropic.md).

Keys come as ``x-api-key`` (Anthropic's SDK) or ``Authorization: Bearer``; the
``anthropic-version`` and ``anthropic-beta`` headers are accepted and not required. Every
error on these paths, authentication and validation included, is in Anthropic's shape
(``api/errors.py`` renders it by path); before the first byte as a plain JSON response with
its status, after it as an ``event: error``, never a silent cut. Answers carry the request's
id as ``request-id`` (the usage record's key).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from modelgrid.api.body import json_body
from modelgrid.api.deps import CallDep
from modelgrid.api.disconnect import unless_disconnected
from modelgrid.api.sse import SSEResponse
from modelgrid.core.errors import ModelgridError
from modelgrid.protocol.anthropic.errors import API_ERROR, error_body, error_type
from modelgrid.protocol.anthropic.events import Event, error_event, sse_event
from modelgrid.protocol.anthropic.models import CountTokensRequest, MessagesRequest

log = logging.getLogger("modelgrid.api")
router = APIRouter(prefix="/v1")


@router.post("/messages")
async def create_message(request: Request, call: CallDep) -> Response:
    body = await json_body(request, MessagesRequest)
    service = call.state.messages
    call.ctx.response_headers["request-id"] = call.ctx.request_id
    gen = await service.open(call.principal, body, call.ctx)
    if not body.stream:
        done = await unless_disconnected(request, service.complete(gen))
        return done if isinstance(done, Response) else JSONResponse(done)
    request_id = call.ctx.request_id
    return SSEResponse(_sse(service.events(gen), request_id), cut=lambda e: _cut(e, request_id))


@router.post("/messages/count_tokens")
async def count_tokens(request: Request, call: CallDep) -> JSONResponse:
    """The prompt's exact token count (not billed: no usage record)."""
    body = await json_body(request, CountTokensRequest)
    call.ctx.response_headers["request-id"] = call.ctx.request_id
    count = await call.state.messages.count_tokens(call.principal, body, call.ctx)
    return JSONResponse({"input_tokens": count})


def _cut(exc: ModelgridError, request_id: str) -> bytes:
    """The ``event: error`` that ends a stream after its first event."""
    return error_event(error_body(error_type(exc), exc.message, request_id))


async def _sse(events: AsyncGenerator[Event, None], request_id: str) -> AsyncIterator[bytes]:
    sent = False
    try:
        async for name, data in events:
            yield sse_event(name, data)
            sent = True
    except ModelgridError as exc:
        if not sent:
            raise  # SSEResponse answers it as plain JSON, in Anthropic's shape
        yield _cut(exc, request_id)
    except Exception:
        log.exception("generation failed while streaming")
        message = "The server had an error while generating."
        yield error_event(error_body(API_ERROR, message, request_id))
    finally:
        await events.aclose()


__all__ = ["router"]
