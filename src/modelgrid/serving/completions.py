"""OpenAI text completions on top of ``Generation`` (https://platform.openai.com/docs/api-reference/completions).

Each prompt of a request is one ``Generation`` (the engine renders ``request.prompt`` raw, with
no chat template); all of them are opened, i.e. scope-checked, tokenized and checked against
the context window, before the first byte, so those errors are plain JSON. They then run one
after another and their choices are numbered ``prompt_index * n + i``.

Metering is chat's (``Generation`` measures tokens, TTFT and status), but one HTTP request is
one admission and one usage record, however many prompts it has. Each prompt's ``Generation``
meters through a ``PromptGroupMeter`` (``serving.meter``): it notes the prompt's token
estimate instead of admitting it, and keeps the prompt's usage event instead of recording it.
``CompletionService.open`` then admits the request once through the service's meter, for the
sum of the estimates (so a refusal leaves nothing half-admitted), and ``CompletionRun.deltas``
records the merged event once, in its ``finally`` (completed, failed, or abandoned alike).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from modelgrid.core.errors import ContextLengthExceededError
from modelgrid.core.ids import completion_id
from modelgrid.core.types import CallContext, Delta, FinishReason, TokenUsage
from modelgrid.protocol.openai.completions import (
    CompletionChunkWriter,
    CompletionRequest,
    completion_dict,
    to_inference_requests,
)
from modelgrid.serving.generation import Generation, GenerationService
from modelgrid.serving.meter import Meter, PromptGroupMeter
from modelgrid.tenancy.events import UsageEvent
from modelgrid.tenancy.ratelimit import Admission
from modelgrid.tenancy.service import Principal

ENDPOINT = "completions"
_ABNORMAL = (FinishReason.CANCELLED.value, FinishReason.ERROR.value)


def merge_usage(events: list[UsageEvent]) -> UsageEvent:
    """One record for a request whose prompts each produced one: tokens add up, the first
    token is the earliest, the end is the latest, and a failure or cancellation wins."""
    if len(events) == 1:
        return events[0]
    status = next((e.status for e in events if e.status != 200), 200)
    reasons: set[str] = set()
    for e in events:
        if e.finish_reason:
            reasons.update(e.finish_reason.split(","))
    abnormal = [r for r in _ABNORMAL if r in reasons]
    finish = abnormal[0] if abnormal else (",".join(sorted(reasons)) or None)
    ttfts = [e.ttft_ms for e in events if e.ttft_ms is not None]
    lasts = [e.last_token_ms for e in events if e.last_token_ms is not None]
    return dataclasses.replace(
        events[0],
        prompt_tokens=sum(e.prompt_tokens for e in events),
        cached_tokens=sum(e.cached_tokens for e in events),
        completion_tokens=sum(e.completion_tokens for e in events),
        ttft_ms=min(ttfts) if ttfts else None,
        total_ms=max(e.total_ms for e in events),
        last_token_ms=max(lasts) if lasts else None,
        status=status,
        finish_reason=finish,
        created_at=events[-1].created_at,
    )


@dataclasses.dataclass(slots=True)
class CompletionRun:
    """The generations of one completions request (one per prompt), metered as one.

    Attributes:
        generations: One per prompt, in prompt order.
        prompts: The prompt texts (for ``echo``).
        n: Choices per prompt.
        echo: Prepend each prompt to its choices' text.
        principal / meter / admission: Who is billed, where, and the request's one admission.
        per_prompt: Collects each prompt's usage event.
    """

    generations: list[Generation]
    prompts: list[str]
    n: int
    echo: bool
    principal: Principal
    meter: Meter
    admission: Admission | None
    per_prompt: PromptGroupMeter

    @property
    def model(self) -> str:
        return self.generations[0].request.model

    @property
    def usage(self) -> TokenUsage:
        prompt = sum(g.usage.prompt_tokens for g in self.generations)
        completion = sum(g.usage.completion_tokens for g in self.generations)
        cached = sum(g.usage.cached_tokens for g in self.generations)
        return TokenUsage(prompt, completion, cached)

    @property
    def finish_reasons(self) -> list[str]:
        return [r or "stop" for g in self.generations for r in g.finish_reasons]

    def prompt_of(self, index: int) -> str:
        return self.prompts[index // self.n]

    async def deltas(self) -> AsyncGenerator[Delta, None]:
        """Every prompt's deltas, renumbered to the request's choice index; the request's
        usage is recorded once when this iterator ends, however it ends."""
        try:
            for p, gen in enumerate(self.generations):
                async with aclosing(gen.deltas()) as stream:
                    async for delta in stream:
                        yield dataclasses.replace(delta, index=p * self.n + delta.index)
        finally:
            events, self.per_prompt.events = self.per_prompt.events, []
            if events:
                admissions = [self.admission] if self.admission is not None else []
                self.meter.finish(self.principal, admissions, merge_usage(events))


class CompletionService(GenerationService):
    async def open(
        self, principal: Principal, body: CompletionRequest, ctx: CallContext
    ) -> CompletionRun:
        """Validate, convert, prepare every prompt and admit the request; every error here
        precedes the first byte.

        Raises:
            InvalidRequestError / UnsupportedParameterError: see ``to_inference_requests``.
            PermissionDeniedError, ModelNotFoundError, ServiceUnavailableError,
            ContextLengthExceededError (``param="prompt"``): see ``Generation.open``.
            RateLimitError, QuotaExceededError: a limit of the workspace or key (429).
        """
        requests = to_inference_requests(body, ctx.request_id)
        for request in requests:
            request.stream = bool(body.stream)
        per_prompt = PromptGroupMeter()
        generations: list[Generation] = []
        for request in requests:
            try:
                gen = await self.generation(
                    principal, request, ctx, endpoint=ENDPOINT, meter=per_prompt
                )
            except ContextLengthExceededError as exc:
                raise exc.at("prompt") from None
            generations.append(gen)
        admission = await self.meter.admit(
            principal,
            ctx.request_id,
            sum(per_prompt.estimates),
            model=per_prompt.model,
            region=per_prompt.region,
        )
        if admission is not None:
            ctx.response_headers.update(admission.headers())
        return CompletionRun(
            generations=generations,
            prompts=[r.prompt or "" for r in requests],
            n=requests[0].n,
            echo=bool(body.echo),
            principal=principal,
            meter=self.meter,
            admission=admission,
            per_prompt=per_prompt,
        )

    async def complete(self, run: CompletionRun) -> dict[str, Any]:
        """Run to the end and return a ``text_completion`` object."""
        texts: list[list[str]] = [
            [run.prompt_of(i)] if run.echo else [] for i in range(len(run.prompts) * run.n)
        ]
        async for delta in run.deltas():
            if delta.text:
                texts[delta.index].append(delta.text)
        return completion_dict(
            completion_id=completion_id("cmpl"),
            created=int(time.time()),
            model=run.model,
            texts=["".join(t) for t in texts],
            finish_reasons=run.finish_reasons,
            usage=run.usage,
        )

    async def chunks(
        self, run: CompletionRun, include_usage: bool
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Streamed ``text_completion`` objects, in order, ending with the usage chunk if asked.

        With ``echo`` a choice's first chunk carries its prompt; a choice's last chunk carries
        its ``finish_reason`` (and possibly the last text).
        """
        writer = CompletionChunkWriter(
            completion_id("cmpl"), int(time.time()), run.model, include_usage
        )
        echoed: set[int] = set()
        async for delta in run.deltas():
            if run.echo and delta.index not in echoed:
                echoed.add(delta.index)
                yield writer.chunk(delta.index, run.prompt_of(delta.index))
            if delta.text or delta.finish_reason is not None:
                reason = None if delta.finish_reason is None else delta.finish_reason.value
                yield writer.chunk(delta.index, delta.text, reason)
        if include_usage:
            yield writer.usage_chunk(run.usage)


__all__ = ["ENDPOINT", "CompletionRun", "CompletionService", "merge_usage"]
