"""DashScope text generation on top of ``Generation`` (framework-free).

The same ``Generation`` as the OpenAI chat service does the work, so admission, model lookup
and usage metering (one record in its ``finally``) are identical; only the response shapes
differ (``modelgrid.protocol.dashscope.convert``). Streaming follows the API reference
(https://help.aliyun.com/zh/model-studio/qwen-api-reference): one ``result`` event per text
increment, each with the running usage and ``finish_reason: "null"``, then one event per choice
with its final ``finish_reason``; ``incremental_output`` selects deltas or the text so far.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from modelgrid.core.types import CallContext
from modelgrid.protocol.dashscope.convert import (
    response_dict,
    stream_event_dict,
    to_inference_request,
)
from modelgrid.protocol.dashscope.models import GenerationRequest, ResultFormat
from modelgrid.serving.generation import Generation
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.service import Principal, TenancyService

ENDPOINT = "dashscope.generation"


class TextGenerationService:
    def __init__(self, models: ModelRegistry, tenancy: TenancyService, metrics: Metrics) -> None:
        self.models = models
        self.tenancy = tenancy
        self.metrics = metrics

    async def open(
        self, principal: Principal, body: GenerationRequest, ctx: CallContext
    ) -> Generation:
        """Validate, convert and prepare; every error here precedes the first byte.

        Raises:
            InvalidRequestError, ModelNotFoundError, ServiceUnavailableError: see
            ``to_inference_request`` and ``Generation.open``.
        """
        request = to_inference_request(body, ctx.request_id)
        return await Generation.open(
            principal=principal,
            request=request,
            models=self.models,
            tenancy=self.tenancy,
            metrics=self.metrics,
            endpoint=ENDPOINT,
            ctx=ctx,
        )

    async def complete(self, gen: Generation, result_format: ResultFormat) -> dict[str, Any]:
        """Run to the end and return the non-streamed response body."""
        texts: list[list[str]] = [[] for _ in range(gen.request.n)]
        async for delta in gen.deltas():
            if delta.text:
                texts[delta.index].append(delta.text)
        return response_dict(
            request_id=gen.request.request_id,
            result_format=result_format,
            texts=["".join(t) for t in texts],
            finish_reasons=[r or "stop" for r in gen.finish_reasons],
            usage=gen.usage,
        )

    async def events(
        self, gen: Generation, result_format: ResultFormat, incremental: bool
    ) -> AsyncIterator[dict[str, Any]]:
        """The ``data`` objects of the stream's ``result`` events, in order."""
        so_far: list[str] = [""] * gen.request.n
        async for delta in gen.deltas():
            if not delta.text and delta.finish_reason is None:
                continue
            so_far[delta.index] += delta.text
            yield stream_event_dict(
                request_id=gen.request.request_id,
                result_format=result_format,
                index=delta.index,
                text=delta.text if incremental else so_far[delta.index],
                finish_reason=None if delta.finish_reason is None else delta.finish_reason.value,
                usage=gen.usage,
                n=gen.request.n,
            )


__all__ = ["ENDPOINT", "TextGenerationService"]
