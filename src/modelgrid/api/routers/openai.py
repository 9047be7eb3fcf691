"""OpenAI-compatible routes: ``/v1/models`` and ``/v1/chat/completions``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from modelgrid.api.deps import ContextDep, PrincipalDep, StateDep
from modelgrid.api.sse import SSEResponse
from modelgrid.core.errors import ModelgridError
from modelgrid.engines.base import ModelCard
from modelgrid.protocol.openai import sse
from modelgrid.protocol.openai.errors import error_body
from modelgrid.protocol.openai.models import ChatCompletionRequest
from modelgrid.serving.generation import Generation

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
async def list_models(state: StateDep, _: PrincipalDep) -> dict[str, Any]:
    return {"object": "list", "data": [_model_obj(c) for c in state.models.cards()]}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, state: StateDep, _: PrincipalDep) -> dict[str, Any]:
    return _model_obj(state.models.card(model_id))


@router.post("/chat/completions")
async def chat_completions(
    body: ChatCompletionRequest,
    state: StateDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> Response:
    gen = await state.chat.open(principal, body, ctx)
    if not body.stream:
        return JSONResponse(await state.chat.complete(gen))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return SSEResponse(_sse(state, gen, include_usage))


async def _sse(state: Any, gen: Generation, include_usage: bool) -> AsyncIterator[bytes]:
    """SSE bytes; a failure after the first byte becomes an error event, never a silent cut
    (one before it propagates: ``SSEResponse`` answers it as a plain JSON error)."""
    chunks = state.chat.chunks(gen, include_usage)
    sent = False
    try:
        async for chunk in chunks:
            yield sse.event(chunk)
            sent = True
    except ModelgridError as exc:
        if not sent:
            raise
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
