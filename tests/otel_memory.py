"""``GenAiTelemetry`` over the real OpenTelemetry SDK with in-memory exporters, for tests."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from modelgrid.serving.telemetry import GenAiTelemetry


@dataclass
class MemoryTelemetry:
    genai: GenAiTelemetry
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def finished(self, count: int, timeout_s: float = 5.0) -> list[ReadableSpan]:
        """The ended spans, once there are ``count`` (a call's span ends after its response
        may have reached the client)."""
        deadline = time.monotonic() + timeout_s
        while len(self.spans.get_finished_spans()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.spans.get_finished_spans())

    def points(self) -> dict[str, list[Any]]:
        """Metric name -> its data points (histogram points: ``count``, ``sum``,
        ``attributes``)."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


def memory_telemetry(kind: SpanKind = SpanKind.CLIENT) -> MemoryTelemetry:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    genai = GenAiTelemetry(tracer_provider, MeterProvider(metric_readers=[reader]), span_kind=kind)
    return MemoryTelemetry(genai, spans, reader)
