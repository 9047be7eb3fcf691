"""OpenAI's Responses API: ``/v1/responses`` (https://platform.openai.com/docs/api-reference/responses).

Tenant keys; a stored response is its workspace's (another's id is a 404). Generation and
rendering live in ``serving.responses``, storage in ``serving.response_store``. Streams are
``event: <type>`` + ``data: <json>`` pairs, without ``[DONE]`` (the reference's framing).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from modelgrid.api.body import json_body
from modelgrid.api.deps import CallDep
from modelgrid.api.disconnect import unless_disconnected
from modelgrid.api.paging import Cursor, ForwardOnly
from modelgrid.api.sse import SSEResponse
from modelgrid.core.errors import ModelgridError
from modelgrid.protocol.openai.responses import ResponseCreateRequest
from modelgrid.protocol.openai.sse import encode_json

router = APIRouter(prefix="/v1")
log = logging.getLogger("modelgrid.api")


def _frame(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + encode_json(event) + b"\n\n"


def _cut(exc: ModelgridError) -> bytes:
    """The ``error`` event (https://platform.openai.com/docs/api-reference/responses-streaming/error)
    that ends a stream the server cut after its first event."""
    return _frame({"type": "error", "code": exc.code, "message": exc.message, "param": exc.param})


async def _framed(events: AsyncGenerator[dict[str, Any], None]) -> AsyncIterator[bytes]:
    """SSE framing; a bug after the first event becomes an ``error`` event, never a cut."""
    sent = False
    try:
        async for event in events:
            yield _frame(event)
            sent = True
    except ModelgridError:
        if sent:  # serving turns engine errors into events itself
            log.exception("responses stream failed")
        raise
    except Exception:
        if not sent:
            raise
        log.exception("responses stream failed")
        yield _frame(
            {
                "type": "error",
                "code": "internal_error",
                "message": "The server had an error while generating.",
                "param": None,
            }
        )
    finally:
        await events.aclose()


@router.post("/responses")
async def create_response(request: Request, call: CallDep) -> Response:
    body = await json_body(request, ResponseCreateRequest)
    service = call.state.responses
    run = await service.open(call.principal, body, call.ctx)
    if not body.stream:
        done = await unless_disconnected(request, service.complete(run))
        return done if isinstance(done, Response) else JSONResponse(done)
    return SSEResponse(_framed(service.events(run)), cut=_cut)


@router.get("/responses/{response_id}")
async def get_response(response_id: str, call: CallDep) -> dict[str, Any]:
    return await call.state.responses.store.get(call.principal, response_id)


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, call: CallDep) -> dict[str, Any]:
    return await call.state.responses.store.delete(call.principal, response_id)


@router.get("/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    call: CallDep,
    _: ForwardOnly,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    return await call.state.responses.store.input_items(
        call.principal, response_id, after=after, limit=limit, order=order
    )


__all__ = ["router"]
