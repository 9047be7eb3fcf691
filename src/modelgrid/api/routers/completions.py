"""OpenAI text completions: ``POST /v1/completions``.

Errors found while opening the request (validation, unknown model, context length) are plain
JSON through the app's error table; once a stream has started, a failure becomes one error
event (the OpenAI error envelope) and the stream ends without ``[DONE]``. Mounted by the
gateway and by the engine worker alike (see ``routers/openai.py``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from modelgrid.api.body import json_body
from modelgrid.api.deps import ModelCallDep
from modelgrid.api.disconnect import unless_disconnected
from modelgrid.api.openai_sse import error_event, openai_events
from modelgrid.api.sse import SSEResponse
from modelgrid.engines.upstream import PROMPT_TOKENS_HEADER
from modelgrid.protocol.openai.completions import CompletionRequest

router = APIRouter(prefix="/v1")


@router.post("/completions")
async def completions(request: Request, call: ModelCallDep) -> Response:
    body = await json_body(request, CompletionRequest)
    state = call.state
    run = await state.completions.open(call.principal, body, call.ctx)
    if state.sends_prompt_tokens:
        call.ctx.response_headers[PROMPT_TOKENS_HEADER] = str(run.usage.prompt_tokens)
    if not body.stream:
        done = await unless_disconnected(request, state.completions.complete(run))
        return done if isinstance(done, Response) else JSONResponse(done)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return SSEResponse(openai_events(state.completions.chunks(run, include_usage)), cut=error_event)
