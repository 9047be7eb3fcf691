"""OpenAI text completions: ``POST /v1/completions``.

Errors found while opening the request (validation, unknown model, context length) are plain
JSON through the app's error table; once a stream has started, a failure becomes one error
event (the OpenAI error envelope) and the stream ends without ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from modelgrid.api.deps import ContextDep, PrincipalDep, StateDep
from modelgrid.api.sse import SSEResponse
from modelgrid.core.errors import ModelgridError
from modelgrid.protocol.openai import sse
from modelgrid.protocol.openai.completions import CompletionRequest
from modelgrid.protocol.openai.errors import error_body

router = APIRouter(prefix="/v1")


@router.post("/completions")
async def completions(
    body: CompletionRequest,
    state: StateDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> Response:
    run = await state.completions.open(principal, body, ctx)
    if not body.stream:
        return JSONResponse(await state.completions.complete(run))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return SSEResponse(_sse(state.completions.chunks(run, include_usage)))


async def _sse(chunks: AsyncGenerator[dict[str, Any], None]) -> AsyncIterator[bytes]:
    """SSE bytes; a failure after the first byte becomes an error event, never a silent cut."""
    try:
        async for chunk in chunks:
            yield sse.event(chunk)
    except ModelgridError as exc:
        yield sse.event(error_body(exc.message, exc.type, exc.param, exc.code))
        return
    except Exception:
        yield sse.event(
            error_body(
                "The server had an error while generating.", "server_error", None, "internal_error"
            )
        )
        return
    finally:
        await chunks.aclose()
    yield sse.DONE
