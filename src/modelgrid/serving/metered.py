"""One metered call: what every endpoint that runs a model does around it, in one place.

Generation (``serving.generation``: chat, completions, DashScope text) and embeddings
(``serving.embeddings``: OpenAI and DashScope) both go:

1. ``MeteredCall(...)``: the key's model scope (403 ``model_not_allowed``), before anything
   else about the model is looked at;
2. the endpoint routes and prepares (``routing_hints``: residency and region preference from
   the principal and ``X-Modelgrid-Region``; ``placement_headers``: where it runs);
3. ``await call.admit(tokens, region=…)``: rate limits and budgets (429), the reservation's
   headers added to the response;
4. ``with call.running(usage):`` around the model's work: the status is classified from how
   the block ends (200, 499 when the client went away, 503 when the server's shutdown cut it,
   the error's status, else 500) and ONE
   usage event is handed to the meter on the way out, whatever the end, with ``usage(status)``
   giving the endpoint's own figures (tokens, TTFT, the finish reason of a normal end).

The same exit updates the process's series: ``modelgrid_*`` and vLLM's (``serving.metrics``,
``serving.vllm_metrics``), and, when OpenTelemetry is configured, ends the call's GenAI span
(opened on entering ``running``) and records its measurements (``serving.telemetry``).

Requests refused before ``admit`` (scope, validation, routing, an input too long) record
nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from types import TracebackType

from modelgrid.core.errors import (
    SHUTDOWN_CANCEL,
    ModelgridError,
    PermissionDeniedError,
    ServerShutdownError,
)
from modelgrid.core.types import CallContext, FinishReason, RoutingHints
from modelgrid.routing import Placement
from modelgrid.serving.meter import Meter
from modelgrid.serving.metrics import Metrics
from modelgrid.serving.telemetry import CallSpan
from modelgrid.tenancy.events import UsageEvent, now_utc
from modelgrid.tenancy.ratelimit import Admission
from modelgrid.tenancy.service import Principal

STATUS_CLIENT_CLOSED = 499  # nginx's code for "client closed request"


def status_of(exc: BaseException | None) -> int:
    """The status a call that ended with ``exc`` (``None``: normally) is recorded with: a
    cancellation is the client leaving (499) unless the server's shutdown cancelled it (503,
    ``core.errors.ServerShutdownError``)."""
    if exc is None:
        return 200
    if isinstance(exc, asyncio.CancelledError) and exc.args[:1] == (SHUTDOWN_CANCEL,):
        return ServerShutdownError.status
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return STATUS_CLIENT_CLOSED
    if isinstance(exc, ModelgridError):
        return exc.status
    return 500


def routing_hints(principal: Principal, ctx: CallContext) -> RoutingHints:
    """What the router must respect (the key's regions and jurisdictions) and should prefer
    (the requested region, then the workspace's home region) for this call."""
    return RoutingHints(
        allowed_regions=principal.allowed_regions,
        preferred_region=ctx.requested_region,
        home_region=principal.home_region,
        allowed_jurisdictions=principal.allowed_jurisdictions,
    )


def placement_headers(placement: Placement | None, ctx: CallContext) -> None:
    """``x-modelgrid-region`` / ``x-modelgrid-replica``: where the call runs."""
    if placement is not None:
        ctx.response_headers["x-modelgrid-region"] = placement.region
        ctx.response_headers["x-modelgrid-replica"] = placement.replica_id


@dataclass(frozen=True, slots=True)
class Usage:
    """An endpoint's figures for the usage event of one call.

    Attributes:
        prompt_tokens / completion_tokens / cached_tokens: Tokens to bill.
        ttft_s: Seconds to the first output token (``None``: none came, or not applicable).
        last_token_s: Seconds to the last output token (``None``: none came).
        finish_reason: Why a call that ended normally ended (an abnormal end records
            ``cancelled`` or ``error`` instead).
        region: Where the call ran (prices it).
        replica: The replica that ran it (the ``replica`` label of the vLLM-named series).
    """

    prompt_tokens: int
    completion_tokens: int = 0
    cached_tokens: int = 0
    ttft_s: float | None = None
    finish_reason: str | None = None
    region: str | None = None
    replica: str | None = None
    last_token_s: float | None = None


@dataclass(slots=True)
class MeteredCall:
    """One call of ``principal`` to ``model`` (see the module docstring).

    Raises:
        PermissionDeniedError: the key may not use ``model`` (403 ``model_not_allowed``).
    """

    principal: Principal
    model: str
    _: KW_ONLY
    meter: Meter
    metrics: Metrics
    endpoint: str
    ctx: CallContext
    admission: Admission | None = None
    queued_s: float | None = None  # arrival to the start of the model's work (``running``)
    span: CallSpan | None = None  # the GenAI span, while OpenTelemetry is on

    def __post_init__(self) -> None:
        if not self.principal.may_use_model(self.model):
            raise PermissionDeniedError(
                f"This API key may not use the model '{self.model}'.",
                param="model",
                code="model_not_allowed",
            )

    async def admit(self, tokens: int, *, region: str | None) -> None:
        """Admit the call for up to ``tokens`` tokens in ``region`` (its worst case, reserved
        until the usage is recorded); the limits' headers go with the response.

        Raises:
            RateLimitError, QuotaExceededError: a limit or budget of the caller (429).
        """
        admission = await self.meter.admit(
            self.principal, self.ctx.request_id, tokens, model=self.model, region=region
        )
        if admission is not None:
            self.ctx.response_headers.update(admission.headers())
        self.admission = admission

    def running(self, usage: Callable[[int], Usage]) -> Running:
        """A context manager around the model's work: counts the call as running and records
        its usage (``usage(status)``) exactly once when the block ends, however it ends."""
        return Running(self, usage)

    def record(self, status: int, usage: Usage) -> None:
        """Hand the call's one usage event to the meter (settling its admission) and update
        the model's series."""
        total_s = time.perf_counter() - self.ctx.started
        if status == 200:
            finish = usage.finish_reason
        elif status == STATUS_CLIENT_CLOSED:
            finish = FinishReason.CANCELLED.value
        else:
            finish = FinishReason.ERROR.value
        self.meter.finish(
            self.principal,
            [self.admission] if self.admission is not None else [],
            UsageEvent(
                request_id=self.ctx.request_id,
                client_request_id=self.ctx.client_request_id,
                api_key_id=self.principal.key_id,
                workspace_id=self.principal.workspace_id,
                model=self.model,
                endpoint=self.endpoint,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                ttft_ms=None if usage.ttft_s is None else round(usage.ttft_s * 1000),
                total_ms=round(total_s * 1000),
                status=status,
                finish_reason=finish,
                created_at=now_utc(),
                region=usage.region,
                replica=usage.replica,
                last_token_ms=None
                if usage.last_token_s is None
                else round(usage.last_token_s * 1000),
            ),
        )
        series = self.metrics.of(self.model)
        series.prompt_tokens += usage.prompt_tokens
        series.completion_tokens += usage.completion_tokens
        if usage.ttft_s is not None:
            series.ttft.observe(usage.ttft_s)
        series.e2e.observe(total_s)
        self.metrics.vllm.record(
            self.model,
            usage.region or "",
            usage.replica or "",
            self.principal.workspace_id,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            usage.ttft_s,
            total_s,
            self.queued_s,
        )
        span = self.span
        genai = self.metrics.genai
        if span is not None and genai is not None:
            self.span = None
            genai.finish(
                span,
                status=status,
                response_model=self.model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                ttft_s=usage.ttft_s,
                total_s=total_s,
                region=usage.region,
                replica=usage.replica,
            )

    def trace_headers(self) -> dict[str, str] | None:
        """The W3C trace context of the call's span, for its upstream HTTP call (``None``:
        OpenTelemetry off)."""
        return self.span.headers if self.span is not None else None


class Running:
    """``MeteredCall.running``'s context manager (usable in an async generator: a consumer
    that stops early ends it with ``GeneratorExit``, recorded as 499)."""

    __slots__ = ("_call", "_series", "_usage")

    def __init__(self, call: MeteredCall, usage: Callable[[int], Usage]) -> None:
        self._call = call
        self._usage = usage
        self._series = call.metrics.of(call.model)

    def __enter__(self) -> None:
        self._series.running += 1
        call = self._call
        ctx = call.ctx
        call.queued_s = time.perf_counter() - ctx.started
        genai = call.metrics.genai
        if genai is not None:
            call.span = genai.start(call.endpoint, call.model, ctx.started, ctx.trace_carrier)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._series.running -= 1
        status = status_of(exc)
        self._call.record(status, self._usage(status))


__all__ = [
    "STATUS_CLIENT_CLOSED",
    "MeteredCall",
    "Running",
    "Usage",
    "placement_headers",
    "routing_hints",
    "status_of",
]
