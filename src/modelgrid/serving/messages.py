"""Anthropic's Messages API on top of ``Generation``
(https://docs.anthropic.com/en/api/messages), framework-free.

``open`` converts the request (``protocol.anthropic.convert``) and opens a ``Generation``
exactly as chat completions do (scope, routing, templating, admission, then one usage record
under the endpoint ``messages``, whatever the end). ``complete`` returns the ``message``
object; ``events`` the streaming events, where ``message_start`` waits for the first delta:
by then the replica has reported the exact prompt count (a ``modelgrid engine`` worker sends
it before its first token), so ``message_start`` carries the real ``input_tokens`` (the
prefix-cache split, ``cache_read_input_tokens``, is exact in ``message_delta``), and a failure
before it (every replica refused) still reaches the client as a plain JSON error.
``count_tokens`` is the prompt's exact length in the model's own tokens
(``serving.tokenize``): authenticated and scope-checked, but not admitted or billed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from modelgrid.core.types import CallContext
from modelgrid.protocol.anthropic.convert import to_inference_request
from modelgrid.protocol.anthropic.events import Event, MessageWriter
from modelgrid.protocol.anthropic.models import CountTokensRequest, MessagesRequest
from modelgrid.serving.generation import Generation, GenerationService
from modelgrid.serving.meter import Meter
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.serving.tokenize import TokenizeService
from modelgrid.tenancy.service import Principal

ENDPOINT = "messages"


class MessagesService(GenerationService):
    def __init__(self, models: ModelRegistry, meter: Meter, metrics: Metrics) -> None:
        super().__init__(models, meter, metrics)
        self.tokenizer = TokenizeService(models)

    async def open(
        self, principal: Principal, body: MessagesRequest, ctx: CallContext
    ) -> Generation:
        """Validate, convert and prepare; every error here precedes the first byte.

        Raises:
            InvalidRequestError, UnsupportedParameterError: from the conversion (400).
            PermissionDeniedError, ModelNotFoundError, RateLimitError…: from
                ``Generation.open``.
        """
        request = to_inference_request(body, ctx.request_id)
        request.stream = bool(body.stream)
        return await self.generation(principal, request, ctx, endpoint=ENDPOINT)

    async def complete(self, gen: Generation) -> dict[str, Any]:
        """Run to the end and return the ``message`` object."""
        writer = MessageWriter(gen.request.model)
        async for delta in gen.deltas():
            writer.delta(delta)
        return writer.message(gen.usage)

    async def events(self, gen: Generation) -> AsyncGenerator[Event, None]:
        """The streaming events, in order (see the module docstring)."""
        writer = MessageWriter(gen.request.model)
        started = False
        async for delta in gen.deltas():
            if not started:
                started = True
                for event in writer.start(gen.usage):
                    yield event
            for event in writer.delta(delta):
                yield event
        if not started:
            for event in writer.start(gen.usage):
                yield event
        for event in writer.end(gen.usage):
            yield event

    async def count_tokens(
        self, principal: Principal, body: CountTokensRequest, ctx: CallContext
    ) -> int:
        """The prompt's exact token count, tools included, as a generation would be fed it.

        Raises:
            InvalidRequestError, UnsupportedParameterError: from the conversion (400).
            PermissionDeniedError, ModelNotFoundError, ServiceUnavailableError: as
                ``TokenizeService.tokenize``.
        """
        request = to_inference_request(body, ctx.request_id)
        return len((await self.tokenizer.tokenize(principal, request, ctx)).ids)


__all__ = ["ENDPOINT", "MessagesService"]
