"""OpenAI chat completions on top of ``Generation`` (https://platform.openai.com/docs/api-reference/chat).

Streaming follows the reference: the first chunk of each choice carries only the role, content
deltas follow, the last chunk of a choice has an empty delta and its ``finish_reason``; with
``stream_options.include_usage`` every chunk has ``"usage": null`` and one extra final chunk
has ``choices: []`` and the usage. A function call streams as one chunk with its ``id`` and
name, then chunks with pieces of its arguments; with ``logprobs`` each chunk carries those of
the tokens it came from.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

from modelgrid.core.ids import completion_id
from modelgrid.core.types import CallContext, Delta, TokenLogprob
from modelgrid.protocol.openai.convert import (
    ChoiceResult,
    ChunkWriter,
    completion_dict,
    to_inference_request,
)
from modelgrid.protocol.openai.models import ChatCompletionRequest
from modelgrid.protocol.openai.tools import tool_call_delta_dicts
from modelgrid.serving.generation import Generation, GenerationService
from modelgrid.serving.tool_calls import ToolCallFold
from modelgrid.tenancy.service import Principal


class _ChoiceCollector:
    """Folds one choice's deltas into its text, complete tool calls and logprobs."""

    __slots__ = ("calls", "logprobs", "matched_stop", "texts")

    def __init__(self, logprobs: bool) -> None:
        self.texts: list[str] = []
        self.calls = ToolCallFold()
        self.logprobs: list[TokenLogprob] | None = [] if logprobs else None
        self.matched_stop: str | None = None

    def add(self, delta: Delta) -> None:
        if delta.text:
            self.texts.append(delta.text)
        if delta.matched_stop is not None:
            self.matched_stop = delta.matched_stop
        for part in delta.tool_calls:
            self.calls.add(part)
        if self.logprobs is not None:
            self.logprobs.extend(delta.logprobs)

    def result(self, finish_reason: str | None) -> ChoiceResult:
        calls = self.calls.calls()
        text = "".join(self.texts)
        reason = finish_reason or "stop"
        return ChoiceResult(text, reason, calls, self.logprobs, self.matched_stop)


class ChatService(GenerationService):
    async def open(
        self, principal: Principal, body: ChatCompletionRequest, ctx: CallContext
    ) -> Generation:
        """Validate, convert and prepare; every error here precedes the first byte."""
        request = to_inference_request(body, ctx.request_id)
        request.stream = bool(body.stream)
        return await self.generation(principal, request, ctx, endpoint="chat.completions")

    async def complete(self, gen: Generation) -> dict[str, Any]:
        """Run to the end and return a ``chat.completion`` object."""
        logprobs = gen.request.sampling.logprobs
        choices = [_ChoiceCollector(logprobs) for _ in range(gen.request.n)]
        async for delta in gen.deltas():
            choices[delta.index].add(delta)
        return completion_dict(
            completion_id=completion_id(),
            created=int(time.time()),
            model=gen.request.model,
            choices=[c.result(r) for c, r in zip(choices, gen.finish_reasons, strict=True)],
            usage=gen.usage,
        )

    async def chunks(
        self, gen: Generation, include_usage: bool
    ) -> AsyncGenerator[dict[str, Any], None]:
        """``chat.completion.chunk`` objects, in order, ending with the usage chunk if asked."""
        writer = ChunkWriter(completion_id(), int(time.time()), gen.request.model, include_usage)
        opened: set[int] = set()
        pending: dict[int, list[TokenLogprob]] = {}  # logprobs not sent with a chunk yet
        async for delta in gen.deltas():
            i = delta.index
            if i not in opened:
                opened.add(i)
                yield writer.role_chunk(i)
            lps = pending.setdefault(i, [])
            lps.extend(delta.logprobs)
            if delta.text:
                yield writer.chunk(i, {"content": delta.text}, logprobs=lps)
                lps.clear()
            for part in delta.tool_calls:
                for entry in tool_call_delta_dicts(part):
                    yield writer.chunk(i, {"tool_calls": [entry]}, logprobs=lps)
                    lps.clear()
            if delta.finish_reason is not None:
                reason = delta.finish_reason.value
                yield writer.chunk(i, {}, reason, logprobs=lps, stop_reason=delta.matched_stop)
                lps.clear()
        if include_usage:
            yield writer.usage_chunk(gen.usage)


__all__ = ["ChatService"]
