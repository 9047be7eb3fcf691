"""One metered generation: prepare, admit, stream deltas, and record usage exactly once.

``await Generation.open(...)`` does everything that can fail before the first byte (model
scope, model lookup, region residency and the replica pick — the principal's regions and the
requested region travel as ``InferenceRequest.routing`` — templating, tokenization, context
check, then admission against the principal's rate limits and budgets), so those errors
reach the client as plain JSON. Where the request runs goes out as ``x-modelgrid-region`` /
``x-modelgrid-replica`` and into the usage record's ``region`` (which prices it).
``deltas()`` then streams inside the call's ``running`` block (``serving.metered``, the
sequence embeddings share), which records one usage event (priced, spooled to disk before the
response ends) and settles the admission, whether the generation completed, failed, or the
consumer went away (client disconnect: the tokens produced so far).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace

from modelgrid.core.types import CallContext, Delta, InferenceRequest, TokenUsage
from modelgrid.engines.base import Engine, PreparedRequest
from modelgrid.routing import placement_of
from modelgrid.serving.meter import Meter
from modelgrid.serving.metered import MeteredCall, Usage, placement_headers, routing_hints
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.ratelimit import estimate_tokens
from modelgrid.tenancy.service import Principal


@dataclass(slots=True)
class Generation:
    call: MeteredCall
    engine: Engine
    prepared: PreparedRequest
    ttft_s: float | None = None
    last_token_s: float | None = None
    completion_tokens: list[int] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)

    @classmethod
    async def open(
        cls,
        *,
        principal: Principal,
        request: InferenceRequest,
        models: ModelRegistry,
        meter: Meter,
        metrics: Metrics,
        endpoint: str,
        ctx: CallContext,
        affinity_replica: str | None = None,
    ) -> Generation:
        """Check scope, prepare the request and admit it (``affinity_replica``: the replica
        a conversation's previous turn ran on, ``RoutingHints.affinity_replica``).

        Raises:
            PermissionDeniedError: the key may not use this model (403).
            ModelNotFoundError, ServiceUnavailableError, ContextLengthExceededError,
            InvalidRequestError: before anything is generated or billed.
            RateLimitError, QuotaExceededError: a limit of the workspace or key (429).
        """
        call = MeteredCall(
            principal, request.model, meter=meter, metrics=metrics, endpoint=endpoint, ctx=ctx
        )
        engine = models.get(request.model)
        request.routing = routing_hints(principal, ctx)
        request.preemptible = ctx.preemptible
        if affinity_replica is not None:
            request.routing = replace(request.routing, affinity_replica=affinity_replica)
        prepared = engine.prepare(request)
        placement = placement_of(prepared)
        placement_headers(placement, ctx)
        n = request.n
        await call.admit(
            estimate_tokens(prepared.prompt_tokens, request.sampling.max_tokens, n),
            region=placement.region if placement is not None else None,
        )
        return cls(
            call=call,
            engine=engine,
            prepared=prepared,
            completion_tokens=[0] * n,
            finish_reasons=[None] * n,
        )

    @property
    def request(self) -> InferenceRequest:
        return self.prepared.request

    @property
    def usage(self) -> TokenUsage:
        """Tokens so far; the prompt count is the engine's latest report (an upstream's exact
        count replaces the estimate once its usage chunk has arrived)."""
        prompt = self.prepared.prompt_tokens
        cached = min(self.prepared.cached_prompt_tokens, prompt)
        return TokenUsage(prompt, sum(self.completion_tokens), cached)

    async def deltas(self) -> AsyncGenerator[Delta, None]:
        """The engine's deltas; usage is recorded when this iterator ends, however it ends."""
        with self.call.running(self._usage):
            if self.call.span is not None:  # OpenTelemetry on: the replica continues the trace
                self.prepared.request.trace_headers = self.call.trace_headers()
            async for delta in self.engine.stream(self.prepared):
                if self.ttft_s is None:
                    placement_headers(placement_of(self.prepared), self.call.ctx)  # failover
                if delta.completion_tokens > self.completion_tokens[delta.index]:
                    self.last_token_s = time.perf_counter() - self.call.ctx.started
                    if self.ttft_s is None:
                        self.ttft_s = self.last_token_s
                self.completion_tokens[delta.index] = delta.completion_tokens
                if delta.finish_reason is not None:
                    self.finish_reasons[delta.index] = delta.finish_reason.value
                yield delta

    def _usage(self, status: int) -> Usage:
        """The usage event's figures when the stream ends with ``status``."""
        placement = placement_of(self.prepared)
        usage = self.usage
        if status != 200 and self.ttft_s is None and self.prepared.prompt_tokens_estimated:
            # Ended before any output (refused by the replica — a context overflow —, no
            # replica reachable, the client gone), and no replica ever reported processing the
            # prompt: the record stays, billing nothing rather than an estimate.
            usage = TokenUsage(0, usage.completion_tokens)
        reasons = {r for r in self.finish_reasons if r}
        return Usage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=min(self.prepared.cached_prompt_tokens, usage.prompt_tokens),
            ttft_s=self.ttft_s,
            last_token_s=self.last_token_s,
            finish_reason=reasons.pop() if len(reasons) == 1 else ",".join(sorted(reasons)) or None,
            region=placement.region if placement is not None else None,
            replica=placement.replica_id if placement is not None else None,
        )


class GenerationService:
    """Base of the services that run generations (chat, completions, DashScope, Responses,
    Messages): what every one of them opens a ``Generation`` with.

    Args:
        models: The served models (their routed engines).
        meter: Admission and usage recording (``tenancy``, or the batch runner's meter).
        metrics: Prometheus series.
    """

    def __init__(self, models: ModelRegistry, meter: Meter, metrics: Metrics) -> None:
        self.models = models
        self.meter = meter
        self.metrics = metrics

    async def generation(
        self,
        principal: Principal,
        request: InferenceRequest,
        ctx: CallContext,
        *,
        endpoint: str,
        meter: Meter | None = None,
        affinity_replica: str | None = None,
    ) -> Generation:
        """``Generation.open`` with this service's models, meter (or ``meter``) and metrics;
        ``endpoint`` names the call in the usage ledger.

        Raises:
            Every error of ``Generation.open``.
        """
        return await Generation.open(
            principal=principal,
            request=request,
            models=self.models,
            meter=meter or self.meter,
            metrics=self.metrics,
            endpoint=endpoint,
            ctx=ctx,
            affinity_replica=affinity_replica,
        )


__all__ = ["Generation", "GenerationService"]
