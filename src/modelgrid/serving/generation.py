"""One metered generation: prepare, admit, stream deltas, and record usage exactly once.

``await Generation.open(...)`` does everything that can fail before the first byte (model
scope, model lookup, region residency and the replica pick — the principal's regions and the
requested region travel as ``InferenceRequest.routing`` — templating, tokenization, context
check, then admission against the principal's rate limits and budgets), so those errors
reach the client as plain JSON. Where the request runs goes out as ``x-modelgrid-region`` /
``x-modelgrid-replica`` and into the usage record's ``region`` (which prices it).
``deltas()`` then streams; its ``finally`` records one usage event (priced, spooled to disk
before the response ends) and settles the admission, whether the generation completed,
failed, or the consumer went away (client disconnect: the tokens produced so far).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from modelgrid.core.errors import ModelgridError, PermissionDeniedError
from modelgrid.core.types import (
    CallContext,
    Delta,
    FinishReason,
    InferenceRequest,
    RoutingHints,
    TokenUsage,
)
from modelgrid.engines.base import Engine, PreparedRequest
from modelgrid.routing import Placement, placement_of
from modelgrid.serving.meter import Meter
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.models import ModelRegistry
from modelgrid.tenancy.metering import UsageEvent, now_utc
from modelgrid.tenancy.ratelimit import Admission, estimate_tokens
from modelgrid.tenancy.service import Principal

STATUS_CLIENT_CLOSED = 499  # nginx's code for "client closed request"


@dataclass(slots=True)
class Generation:
    principal: Principal
    engine: Engine
    prepared: PreparedRequest
    meter: Meter
    metrics: Metrics
    endpoint: str
    ctx: CallContext
    admission: Admission | None = None
    ttft_s: float | None = None
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
    ) -> Generation:
        """Check scope, prepare the request and admit it.

        Raises:
            PermissionDeniedError: the key may not use this model (403).
            ModelNotFoundError, ServiceUnavailableError, ContextLengthExceededError,
            InvalidRequestError: before anything is generated or billed.
            RateLimitError, QuotaExceededError: a limit of the workspace or key (429).
        """
        if not principal.may_use_model(request.model):
            raise PermissionDeniedError(
                f"This API key may not use the model '{request.model}'.",
                param="model",
                code="model_not_allowed",
            )
        engine = models.get(request.model)
        request.routing = RoutingHints(
            allowed_regions=principal.allowed_regions,
            preferred_region=ctx.requested_region,
            home_region=principal.home_region,
            allowed_jurisdictions=principal.allowed_jurisdictions,
        )
        prepared = engine.prepare(request)
        placement = _placement_headers(prepared, ctx)
        n = request.n
        admission = await meter.admit(
            principal,
            request.request_id,
            estimate_tokens(prepared.prompt_tokens, request.sampling.max_tokens, n),
            model=request.model,
            region=placement.region if placement is not None else None,
        )
        if admission is not None:
            ctx.response_headers.update(admission.headers())
        return cls(
            principal=principal,
            engine=engine,
            prepared=prepared,
            meter=meter,
            metrics=metrics,
            endpoint=endpoint,
            ctx=ctx,
            admission=admission,
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
        status = 200
        outcome: str | None = None
        series = self.metrics.of(self.request.model)
        series.running.inc()
        try:
            async for delta in self.engine.stream(self.prepared):
                if self.ttft_s is None:
                    _placement_headers(self.prepared, self.ctx)  # after any failover
                if self.ttft_s is None and delta.completion_tokens:
                    self.ttft_s = time.perf_counter() - self.ctx.started
                self.completion_tokens[delta.index] = delta.completion_tokens
                if delta.finish_reason is not None:
                    self.finish_reasons[delta.index] = delta.finish_reason.value
                yield delta
        except (asyncio.CancelledError, GeneratorExit):
            status, outcome = STATUS_CLIENT_CLOSED, FinishReason.CANCELLED.value
            raise
        except ModelgridError as exc:
            status, outcome = exc.status, FinishReason.ERROR.value
            raise
        except BaseException:
            status, outcome = 500, FinishReason.ERROR.value
            raise
        finally:
            series.running.dec()
            self._record(status, outcome)

    def _record(self, status: int, outcome: str | None) -> None:
        total_s = time.perf_counter() - self.ctx.started
        placement = placement_of(self.prepared)
        usage = self.usage
        if status != 200 and self.ttft_s is None and self.prepared.prompt_tokens_estimated:
            # Ended before any output (refused by the replica — a context overflow —, no
            # replica reachable, the client gone), and no replica ever reported processing the
            # prompt: the record stays, billing nothing rather than an estimate.
            usage = TokenUsage(0, usage.completion_tokens)
        reasons = {r for r in self.finish_reasons if r}
        finish = outcome or (
            reasons.pop() if len(reasons) == 1 else ",".join(sorted(reasons)) or None
        )
        self.meter.finish(
            self.principal,
            [self.admission] if self.admission is not None else [],
            UsageEvent(
                request_id=self.request.request_id,
                client_request_id=self.ctx.client_request_id,
                api_key_id=self.principal.key_id,
                workspace_id=self.principal.workspace_id,
                model=self.request.model,
                endpoint=self.endpoint,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=min(self.prepared.cached_prompt_tokens, usage.prompt_tokens),
                ttft_ms=None if self.ttft_s is None else round(self.ttft_s * 1000),
                total_ms=round(total_s * 1000),
                status=status,
                finish_reason=finish,
                created_at=now_utc(),
                region=placement.region if placement is not None else None,
            ),
        )
        series = self.metrics.of(self.request.model)
        series.prompt_tokens.inc(usage.prompt_tokens)
        series.completion_tokens.inc(usage.completion_tokens)
        if self.ttft_s is not None:
            series.ttft.observe(self.ttft_s)
        series.e2e.observe(total_s)


def _placement_headers(prepared: PreparedRequest, ctx: CallContext) -> Placement | None:
    """``x-modelgrid-region`` / ``x-modelgrid-replica``: where the request runs (returned)."""
    placement = placement_of(prepared)
    if placement is not None:
        ctx.response_headers["x-modelgrid-region"] = placement.region
        ctx.response_headers["x-modelgrid-replica"] = placement.replica_id
    return placement


__all__ = ["STATUS_CLIENT_CLOSED", "Generation"]
