"""OpenAI chat completions on top of ``Generation`` (https://platform.openai.com/docs/api-reference/chat).

Streaming follows the reference: the first chunk of each choice carries only the role, content
deltas follow, the last chunk of a choice has an empty delta and its ``finish_reason``; with
``stream_options.include_usage`` every chunk has ``"usage": null`` and one extra final chunk
has ``choices: []`` and the usage.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from modelgrid.core.ids import completion_id
from modelgrid.core.types import CallContext
from modelgrid.protocol.openai.convert import ChunkWriter, completion_dict, to_inference_request
from modelgrid.protocol.openai.models import ChatCompletionRequest
from modelgrid.serving.generation import Generation
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.service import Principal, TenancyService


class ChatService:
    def __init__(self, models: ModelRegistry, tenancy: TenancyService, metrics: Metrics) -> None:
        self.models = models
        self.tenancy = tenancy
        self.metrics = metrics

    async def open(
        self, principal: Principal, body: ChatCompletionRequest, ctx: CallContext
    ) -> Generation:
        """Validate, convert and prepare; every error here precedes the first byte."""
        request = to_inference_request(body, ctx.request_id)
        return await Generation.open(
            principal=principal,
            request=request,
            models=self.models,
            tenancy=self.tenancy,
            metrics=self.metrics,
            endpoint="chat.completions",
            ctx=ctx,
        )

    async def complete(self, gen: Generation) -> dict[str, Any]:
        """Run to the end and return a ``chat.completion`` object."""
        n = gen.request.n
        texts: list[list[str]] = [[] for _ in range(n)]
        async for delta in gen.deltas():
            if delta.text:
                texts[delta.index].append(delta.text)
        return completion_dict(
            completion_id=completion_id(),
            created=int(time.time()),
            model=gen.request.model,
            texts=["".join(t) for t in texts],
            finish_reasons=[r or "stop" for r in gen.finish_reasons],
            usage=gen.usage,
        )

    async def chunks(self, gen: Generation, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
        """``chat.completion.chunk`` objects, in order, ending with the usage chunk if asked."""
        writer = ChunkWriter(completion_id(), int(time.time()), gen.request.model, include_usage)
        opened: set[int] = set()
        async for delta in gen.deltas():
            if delta.index not in opened:
                opened.add(delta.index)
                yield writer.role_chunk(delta.index)
            if delta.text:
                yield writer.chunk(delta.index, {"content": delta.text})
            if delta.finish_reason is not None:
                yield writer.chunk(delta.index, {}, delta.finish_reason.value)
        if include_usage:
            yield writer.usage_chunk(gen.usage)


__all__ = ["ChatService"]
