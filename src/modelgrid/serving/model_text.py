"""One short metered generation whose text the gateway itself reads (framework-free): a
search query rewritten by the model, facts extracted from a user turn.

It is a request of its own: a new request id (the usage ledger's key, so it is one usage
record beside the caller's answer, under ``endpoint``), routed and admitted like any
generation (``Generation.open``: the key's model scope, residency, rate limits and budget),
greedy (temperature 0) and capped at ``max_tokens``; the whole text is read before it is
returned (``stream=False``: an upstream answers in one body).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from modelgrid.core.ids import new_request_id
from modelgrid.core.types import (
    CallContext,
    ChatMessage,
    InferenceRequest,
    ResponseFormat,
    SamplingParams,
    TokenUsage,
)
from modelgrid.serving.generation import GenerationService
from modelgrid.tenancy.service import Principal


@dataclass(frozen=True, slots=True)
class ModelText:
    """What the model wrote: its ``text``, why it stopped (``stop``, ``length``), its tokens,
    the call's ``request_id`` and how long it took (``elapsed_ms``)."""

    text: str
    finish_reason: str | None
    usage: TokenUsage
    request_id: str
    elapsed_ms: float


def side_context(ctx: CallContext) -> CallContext:
    """The caller's context for a request of its own: a new request id, the clock started
    now, no response headers (the caller's answer carries its own placement headers); the
    region preference, trace context and client id stay."""
    return replace(
        ctx, request_id=new_request_id(), started=time.perf_counter(), response_headers={}
    )


async def generate_text(
    service: GenerationService,
    principal: Principal,
    model: str,
    messages: list[ChatMessage],
    ctx: CallContext,
    *,
    endpoint: str,
    max_tokens: int,
    response_format: ResponseFormat | None = None,
) -> ModelText:
    """Run ``messages`` on ``model`` greedily, at most ``max_tokens``, as one metered
    request (``ctx``: the caller's; the call gets ``side_context(ctx)``).

    Raises:
        Every error of ``Generation.open`` and of the engine's stream (403 model scope or
        residency, 404 unknown model, 429 limits, 503 no replica, 502/504 upstream): the
        caller decides what its failure means; nothing is swallowed here.
    """
    own = side_context(ctx)
    request = InferenceRequest(
        request_id=own.request_id,
        model=model,
        messages=messages,
        sampling=SamplingParams(
            max_tokens=max_tokens, temperature=0.0, response_format=response_format
        ),
        stream=False,
    )
    gen = await service.generation(principal, request, own, endpoint=endpoint)
    parts = [delta.text async for delta in gen.deltas()]
    return ModelText(
        text="".join(parts),
        finish_reason=gen.finish_reasons[0],
        usage=gen.usage,
        request_id=own.request_id,
        elapsed_ms=(time.perf_counter() - own.started) * 1000.0,
    )


__all__ = ["ModelText", "generate_text", "side_context"]
