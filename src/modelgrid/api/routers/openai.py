"""OpenAI-compatible routes: ``/v1/models`` and ``/v1/chat/completions``.

Mounted by the gateway and by the engine worker alike, over the state both provide
(``api.state.ModelApi``): the same validation, SSE framing, error events and disconnect
handling in both; a worker's answers also carry the exact prompt count
(``PROMPT_TOKENS_HEADER``) for the gateway in front of it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from modelgrid.api.body import json_body
from modelgrid.api.deps import ModelCallDep
from modelgrid.api.disconnect import unless_disconnected
from modelgrid.api.openai_sse import error_event, openai_events
from modelgrid.api.sse import SSEResponse
from modelgrid.core.errors import ModelNotFoundError
from modelgrid.engines.base import ModelCard
from modelgrid.engines.upstream import PROMPT_TOKENS_HEADER
from modelgrid.protocol.openai.models import ChatCompletionRequest

router = APIRouter(prefix="/v1")


def _model_obj(card: ModelCard) -> dict[str, Any]:
    return {
        "id": card.model_id,
        "object": "model",
        "created": card.created,
        "owned_by": card.owned_by,
        "context_length": card.context_length,
    }


@router.get("/models")
async def list_models(call: ModelCallDep) -> dict[str, Any]:
    """The models this key may use (a key scoped to some models sees only those)."""
    principal = call.principal
    cards = [c for c in call.state.models.cards() if principal.may_use_model(c.model_id)]
    return {"object": "list", "data": [_model_obj(c) for c in cards]}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, call: ModelCallDep) -> dict[str, Any]:
    if not call.principal.may_use_model(model_id):
        raise ModelNotFoundError(
            f"The model '{model_id}' does not exist or you do not have access to it.",
            param="model",
        )
    return _model_obj(call.state.models.card(model_id))


@router.post("/chat/completions")
async def chat_completions(request: Request, call: ModelCallDep) -> Response:
    body = await json_body(request, ChatCompletionRequest)
    state = call.state
    gen = await state.chat.open(call.principal, body, call.ctx)
    if state.sends_prompt_tokens:
        call.ctx.response_headers[PROMPT_TOKENS_HEADER] = str(gen.usage.prompt_tokens)
    if not body.stream:
        done = await unless_disconnected(request, state.chat.complete(gen))
        return done if isinstance(done, Response) else JSONResponse(done)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return SSEResponse(openai_events(state.chat.chunks(gen, include_usage)), cut=error_event)
