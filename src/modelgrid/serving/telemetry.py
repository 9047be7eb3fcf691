"""OpenTelemetry traces and metrics in the GenAI semantic conventions.

Names and attributes follow https://opentelemetry.io/docs/specs/semconv/gen-ai/ (spans:
``gen-ai-spans``; metrics: ``gen-ai-metrics``, with their ``ExplicitBucketBoundaries``):

- a span per metered call, named ``{gen_ai.operation.name} {gen_ai.request.model}``, from the
  request's arrival to its end, with ``gen_ai.operation.name`` (``chat``,
  ``text_completion``, ``embeddings``), ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` / ``output_tokens``,
  ``error.type`` on a failed call, and where it ran (``modelgrid.region``,
  ``modelgrid.replica``). The gateway's span is ``CLIENT`` (it calls the model); an engine
  worker's is ``SERVER``. The span's W3C trace context (``traceparent``) goes with the
  upstream HTTP call to the replica (``InferenceRequest.trace_headers``), and a worker that
  receives it (``CallContext.trace_carrier``) makes its span a child of the gateway's;
- ``gen_ai.client.operation.duration`` (s), ``gen_ai.client.token.usage`` ({token}, with
  ``gen_ai.token.type`` ``input`` / ``output``), ``gen_ai.server.time_to_first_token`` (s) and
  ``gen_ai.server.time_per_output_token`` (s; the mean gap after the first token, successful
  calls only), with the same operation, provider and model attributes.

Off and costless when not configured: the composition root builds a ``GenAiTelemetry`` only
when ``observability.otlp_endpoint`` is set (``otlp_telemetry``) or a test passes one in; the
call path then checks one ``None``. This module imports only OpenTelemetry's API; the SDK and
the OTLP exporter are imported inside ``otlp_telemetry`` (the ``otel`` extra).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from modelgrid.config import ObservabilitySettings

# The semantic conventions' bucket advice (gen-ai-metrics).
DURATION_BUCKETS_S = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
TTFT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TPOT_BUCKETS_S = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip

# The usage ledger's endpoint -> gen_ai.operation.name.
OPERATIONS = {
    "chat.completions": "chat",
    "messages": "chat",
    "responses": "chat",
    "dashscope.generation": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}

_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(slots=True)
class CallSpan:
    """One call's span, its metric attributes, and the trace headers for its upstream call."""

    span: Span
    attributes: dict[str, str]
    headers: dict[str, str]


class GenAiTelemetry:
    """The GenAI instruments of one process.

    Args:
        tracer_provider / meter_provider: Where spans and measurements go (the SDK's, with an
            OTLP or in-memory exporter).
        provider_name: ``gen_ai.provider.name`` (default ``modelgrid``: the served models are
            modelgrid's, whatever runs them).
        span_kind: ``CLIENT`` for the gateway (it calls the model), ``SERVER`` for a worker.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        *,
        provider_name: str = "modelgrid",
        span_kind: SpanKind = SpanKind.CLIENT,
    ) -> None:
        self.provider_name = provider_name
        self.span_kind = span_kind
        self._providers: tuple[object, ...] = (tracer_provider, meter_provider)
        self._tracer = tracer_provider.get_tracer("modelgrid")
        meter = meter_provider.get_meter("modelgrid")
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S),
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=[float(b) for b in TOKEN_BUCKETS],
        )
        self.ttft = meter.create_histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time to generate first token for successful responses.",
            explicit_bucket_boundaries_advisory=list(TTFT_BUCKETS_S),
        )
        self.tpot = meter.create_histogram(
            "gen_ai.server.time_per_output_token",
            unit="s",
            description="Time per output token generated after the first token for "
            "successful responses.",
            explicit_bucket_boundaries_advisory=list(TPOT_BUCKETS_S),
        )

    def shutdown(self) -> None:
        """Flush and stop the providers that can (the SDK's: pending spans and the last
        measurements are exported)."""
        for provider in self._providers:
            stop = getattr(provider, "shutdown", None)
            if callable(stop):
                stop()

    def start(
        self,
        endpoint: str,
        model: str,
        started: float,
        carrier: Mapping[str, str] | None = None,
    ) -> CallSpan:
        """Open the span of a call that arrived at ``time.perf_counter()`` ``started``.

        Args:
            endpoint: The usage ledger's endpoint (``OPERATIONS`` names its operation).
            model: The requested model id.
            started: The request's arrival (``CallContext.started``): the span starts there.
            carrier: The incoming request's ``traceparent`` / ``tracestate`` (a worker
                behind a gateway): the span becomes its child.
        """
        operation = OPERATIONS.get(endpoint, "chat")
        attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": self.provider_name,
            "gen_ai.request.model": model,
        }
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        start_ns = time.time_ns() - int((time.perf_counter() - started) * 1e9)
        span = self._tracer.start_span(
            f"{operation} {model}",
            context=parent,
            kind=self.span_kind,
            attributes=attributes,
            start_time=start_ns,
        )
        headers: dict[str, str] = {}
        _PROPAGATOR.inject(headers, context=set_span_in_context(span))
        return CallSpan(span, attributes, headers)

    def finish(
        self,
        call: CallSpan,
        *,
        status: int,
        response_model: str,
        prompt_tokens: int,
        completion_tokens: int,
        ttft_s: float | None,
        total_s: float,
        region: str | None,
        replica: str | None,
    ) -> None:
        """Record the call's measurements and end its span.

        Args:
            status: The call's HTTP-like status (200 ok; 499 client gone; else the error's).
            response_model: The model that answered (``gen_ai.response.model``).
            prompt_tokens / completion_tokens: Billed tokens.
            ttft_s: Arrival to first output token, seconds (``None``: no output).
            total_s: Arrival to end, seconds.
            region / replica: Where the call ran (span attributes only: unbounded for
                metrics across topologies).
        """
        attrs: dict[str, Any] = {**call.attributes, "gen_ai.response.model": response_model}
        if status != 200:
            attrs["error.type"] = str(status)
        self.duration.record(total_s, attrs)
        self.token_usage.record(prompt_tokens, {**attrs, "gen_ai.token.type": "input"})
        self.token_usage.record(completion_tokens, {**attrs, "gen_ai.token.type": "output"})
        if status == 200 and ttft_s is not None:
            self.ttft.record(ttft_s, attrs)
            if completion_tokens > 1:
                self.tpot.record(max(total_s - ttft_s, 0.0) / (completion_tokens - 1), attrs)
        span = call.span
        span.set_attribute("gen_ai.response.model", response_model)
        span.set_attribute("gen_ai.usage.input_tokens", prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", completion_tokens)
        if region is not None:
            span.set_attribute("modelgrid.region", region)
        if replica is not None:
            span.set_attribute("modelgrid.replica", replica)
        if status != 200:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR, f"status {status}"))
        span.end()


def otlp_telemetry(settings: ObservabilitySettings, *, span_kind: SpanKind) -> GenAiTelemetry:
    """``GenAiTelemetry`` over the OpenTelemetry SDK, exporting over OTLP/HTTP (protobuf) to
    ``settings.otlp_endpoint`` (``…/v1/traces`` and ``…/v1/metrics`` below it) in batches.

    Raises:
        RuntimeError: the ``otel`` extra (``opentelemetry-sdk``,
            ``opentelemetry-exporter-otlp-proto-http``) is not installed (at start-up).
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise RuntimeError(
            "observability.otlp_endpoint is set but the OTLP exporter is not installed: "
            "pip install 'modelgrid[otel]'"
        ) from exc
    base = settings.otlp_endpoint.rstrip("/")
    resource = Resource.create({"service.name": settings.service_name})
    tracer_provider = SdkTracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{base}/v1/traces")))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(f"{base}/v1/metrics"),
        export_interval_millis=int(settings.otlp_metrics_interval_s * 1000),
    )
    meter_provider = SdkMeterProvider(resource=resource, metric_readers=[reader])
    return GenAiTelemetry(
        tracer_provider,
        meter_provider,
        provider_name=settings.provider_name,
        span_kind=span_kind,
    )


__all__ = [
    "DURATION_BUCKETS_S",
    "OPERATIONS",
    "TOKEN_BUCKETS",
    "TPOT_BUCKETS_S",
    "TTFT_BUCKETS_S",
    "CallSpan",
    "GenAiTelemetry",
    "otlp_telemetry",
]
