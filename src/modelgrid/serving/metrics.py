"""Prometheus metrics, one registry per app (nothing global at import time).

Names follow Prometheus conventions with the unit in the name (``_seconds``, ``_tokens``).
Beside the ``modelgrid_*`` series the same registry exports vLLM's names
(``serving.vllm_metrics``), and ``genai`` holds the OpenTelemetry GenAI instruments when
they are configured (``serving.telemetry``; ``None``: off).

The per-request series are plain numbers a call adds to (``ModelMetrics``, ``Buckets``: no
lock, no ``prometheus_client`` child on the request path; every call is recorded on the event
loop's thread), turned into families when ``/metrics`` is scraped (``_Collector``):

- ``modelgrid_http_requests_total{route,status}`` — HTTP responses;
- ``modelgrid_prompt_tokens_total{model}`` / ``modelgrid_completion_tokens_total{model}``;
- ``modelgrid_time_to_first_token_seconds{model}`` / ``modelgrid_e2e_request_latency_seconds``
  (histograms, s);
- ``modelgrid_requests_running{model}`` (gauge) and ``modelgrid_queue_depth{model}`` (gauge,
  read from the engine at scrape time);
- ``modelgrid_app_plugin_calls_total{outcome}`` / ``modelgrid_app_plugin_call_duration_seconds``
  (histogram, s): apps' plugin calls (``serving.plugin_http``; ``outcome`` is ``ok``,
  ``http_error``, ``redirect``, ``timeout``, ``connect_error``, ``too_large``,
  ``address_refused``, ``bad_request``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from modelgrid.serving.telemetry import GenAiTelemetry
from modelgrid.serving.vllm_metrics import Buckets, VllmCollector, VllmMetrics

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(slots=True)
class ModelMetrics:
    """One model's series (``Metrics.of``): looked up once a call, added to in place.

    Attributes:
        running: Calls generating now (requests).
        prompt_tokens / completion_tokens: Tokens so far.
        ttft / e2e: Time to first token and request latency (s).
    """

    running: int = 0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    ttft: Buckets = field(default_factory=lambda: Buckets(_LATENCY_BUCKETS_S))
    e2e: Buckets = field(default_factory=lambda: Buckets(_LATENCY_BUCKETS_S))


class Metrics:
    """The metrics of one modelgrid process.

    Args:
        workspace_label: The vLLM-named series also carry ``workspace``
            (``observability.workspace_label``).
        genai: The OpenTelemetry GenAI instruments (``None``: OpenTelemetry off).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self, *, workspace_label: bool = False, genai: GenAiTelemetry | None = None
    ) -> None:
        self.genai = genai
        self.vllm = VllmMetrics(workspace_label=workspace_label)
        self.registry = CollectorRegistry(auto_describe=True)
        self.queue_depth = Gauge(
            "modelgrid_queue_depth",
            "Requests waiting for a replica.",
            ["model"],
            registry=self.registry,
        )
        self.models: dict[str, ModelMetrics] = {}
        self.requests: dict[tuple[str, int], int] = {}
        self.plugin_calls: dict[str, int] = {}
        self.plugin_duration = Buckets(_LATENCY_BUCKETS_S)
        self.registry.register(_Collector(self))
        self.registry.register(VllmCollector(self.vllm, self._running, self._waiting))

    def of(self, model: str) -> ModelMetrics:
        """The series of ``model`` (created on first use)."""
        found = self.models.get(model)
        if found is None:
            found = self.models[model] = ModelMetrics()
        return found

    def count_request(self, route: str, status: int) -> None:
        """One HTTP response on ``route`` (the route's path template) with ``status``."""
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def count_plugin_call(self, outcome: str, elapsed_s: float) -> None:
        """One app plugin call that ended with ``outcome`` after ``elapsed_s`` seconds."""
        self.plugin_calls[outcome] = self.plugin_calls.get(outcome, 0) + 1
        self.plugin_duration.observe(elapsed_s)

    def watch_queue(self, model: str, depth: Callable[[], int]) -> None:
        self.queue_depth.labels(model=model).set_function(lambda: float(depth()))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _running(self) -> list[tuple[str, float]]:
        return [(model, float(s.running)) for model, s in sorted(self.models.items())]

    def _waiting(self) -> list[tuple[str, float]]:
        return [(s.labels["model"], s.value) for m in self.queue_depth.collect() for s in m.samples]


class _Collector(Collector):
    """The ``modelgrid_*`` request series, built at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        requests = CounterMetricFamily(
            "modelgrid_http_requests",
            "HTTP requests by route and status.",
            labels=["route", "status"],
        )
        for (route, status), count in sorted(m.requests.items()):
            requests.add_metric([route, str(status)], count)
        prompt = CounterMetricFamily(
            "modelgrid_prompt_tokens", "Prompt tokens processed.", labels=["model"]
        )
        completion = CounterMetricFamily(
            "modelgrid_completion_tokens", "Completion tokens generated.", labels=["model"]
        )
        ttft = HistogramMetricFamily(
            "modelgrid_time_to_first_token_seconds",
            "Time from request start to the first generated token.",
            labels=["model"],
        )
        e2e = HistogramMetricFamily(
            "modelgrid_e2e_request_latency_seconds",
            "Time from request start to the last byte of the response.",
            labels=["model"],
        )
        running = GaugeMetricFamily(
            "modelgrid_requests_running", "Requests generating now.", labels=["model"]
        )
        for model, s in sorted(m.models.items()):
            prompt.add_metric([model], s.prompt_tokens)
            completion.add_metric([model], s.completion_tokens)
            ttft.add_metric([model], s.ttft.cumulative(), s.ttft.sum)
            e2e.add_metric([model], s.e2e.cumulative(), s.e2e.sum)
            running.add_metric([model], s.running)
        plugins = CounterMetricFamily(
            "modelgrid_app_plugin_calls", "Apps' plugin calls by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(m.plugin_calls.items()):
            plugins.add_metric([outcome], count)
        plugin_s = HistogramMetricFamily(
            "modelgrid_app_plugin_call_duration_seconds", "Time an app's plugin call took."
        )
        plugin_s.add_metric([], m.plugin_duration.cumulative(), m.plugin_duration.sum)
        yield from (requests, prompt, completion, ttft, e2e, running, plugins, plugin_s)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the label sets follow the traffic


__all__ = ["Metrics", "ModelMetrics"]
