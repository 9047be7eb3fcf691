"""DashScope text generation on top of ``Generation`` (framework-free).

The same ``Generation`` as the OpenAI chat service does the work, so admission, model lookup
and usage metering (one record in its ``finally``) are identical; only the response shapes
differ (``modelgrid.protocol.dashscope.convert``). Streaming follows the API reference
(https://help.aliyun.com/zh/model-studio/qwen-api-reference): one ``result`` event per text
increment, each with the running usage and ``finish_reason: "null"``, then one event per choice
with its final ``finish_reason``; ``incremental_output`` selects deltas or the text so far.
Function calls (``parameters.tools``) stream as one event per step of a call (its opening, then
pieces of its arguments): the step itself with ``incremental_output``, else every call so far
(``modelgrid.protocol.dashscope.tools``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from modelgrid.core.types import CallContext, ToolCallDelta
from modelgrid.protocol.dashscope.convert import (
    response_dict,
    stream_event_dict,
    to_inference_request,
)
from modelgrid.protocol.dashscope.models import GenerationRequest, ResultFormat
from modelgrid.protocol.dashscope.tools import call_steps, tool_call_entry, tool_call_step_entry
from modelgrid.serving.generation import Generation, GenerationService
from modelgrid.serving.tool_calls import ToolCallFold
from modelgrid.tenancy.service import Principal

ENDPOINT = "dashscope.generation"


class _Choice:
    """One choice's text and function calls so far, folded from its deltas."""

    __slots__ = ("calls", "text")

    def __init__(self) -> None:
        self.text = ""
        self.calls = ToolCallFold()

    def add_call(self, part: ToolCallDelta) -> None:
        self.calls.add(part)

    def entries(self) -> list[dict[str, Any]]:
        """The message's ``tool_calls`` entries, in call order."""
        return [tool_call_entry(call, i) for i, call in self.calls.indexed()]


class TextGenerationService(GenerationService):
    async def open(
        self, principal: Principal, body: GenerationRequest, ctx: CallContext, *, stream: bool
    ) -> Generation:
        """Validate, convert and prepare; every error here precedes the first byte.
        ``stream``: the response is streamed (SSE).

        Raises:
            InvalidRequestError, ModelNotFoundError, ServiceUnavailableError: see
            ``to_inference_request`` and ``Generation.open``.
        """
        request = to_inference_request(body, ctx.request_id)
        request.stream = stream
        return await self.generation(principal, request, ctx, endpoint=ENDPOINT)

    async def complete(self, gen: Generation, result_format: ResultFormat) -> dict[str, Any]:
        """Run to the end and return the non-streamed response body."""
        choices = [_Choice() for _ in range(gen.request.n)]
        async for delta in gen.deltas():
            choice = choices[delta.index]
            choice.text += delta.text
            for part in delta.tool_calls:
                choice.add_call(part)
        return response_dict(
            request_id=gen.request.request_id,
            result_format=result_format,
            texts=[c.text for c in choices],
            finish_reasons=[r or "stop" for r in gen.finish_reasons],
            usage=gen.usage,
            tool_calls=[c.entries() for c in choices],
        )

    async def events(
        self, gen: Generation, result_format: ResultFormat, incremental: bool
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The ``data`` objects of the stream's ``result`` events, in order: per delta, one
        for its text, one per step of its function calls, the last carrying its finish reason
        (an event of its own when the delta has nothing else)."""
        choices = [_Choice() for _ in range(gen.request.n)]
        async for delta in gen.deltas():
            choice = choices[delta.index]
            steps: list[tuple[str, ToolCallDelta | None]] = (
                [(delta.text, None)] if delta.text else []
            )
            steps += [("", step) for part in delta.tool_calls for step in call_steps(part)]
            if not steps:
                if delta.finish_reason is None:
                    continue
                steps.append(("", None))
            for k, (text, step) in enumerate(steps):
                choice.text += text
                if step is not None:
                    choice.add_call(step)
                last = k == len(steps) - 1
                if incremental:
                    calls = [tool_call_step_entry(step)] if step is not None else None
                else:
                    calls = choice.entries()
                yield stream_event_dict(
                    request_id=gen.request.request_id,
                    result_format=result_format,
                    index=delta.index,
                    text=text if incremental else choice.text,
                    finish_reason=(
                        delta.finish_reason.value if last and delta.finish_reason else None
                    ),
                    usage=gen.usage,
                    n=gen.request.n,
                    tool_calls=calls,
                )


__all__ = ["ENDPOINT", "TextGenerationService"]
