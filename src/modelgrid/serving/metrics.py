"""Prometheus metrics, one registry per app (nothing global at import time).

Names follow Prometheus conventions with the unit in the name (``_seconds``, ``_tokens``).
Beside the ``modelgrid_*`` series the same registry exports vLLM's names
(``serving.vllm_metrics``), and ``genai`` holds the OpenTelemetry GenAI instruments when
they are configured (``serving.telemetry``; ``None``: off).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelgrid.serving.telemetry import GenAiTelemetry
from modelgrid.serving.vllm_metrics import VllmCollector, VllmMetrics

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    """One model's labelled series (``Metrics.of``): looked up once, not per request."""

    running: Any
    prompt_tokens: Any
    completion_tokens: Any
    ttft: Any
    e2e: Any


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
        r = self.registry
        self.requests = Counter(
            "modelgrid_http_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "modelgrid_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r
        )
        self.completion_tokens = Counter(
            "modelgrid_completion_tokens", "Completion tokens generated.", ["model"], registry=r
        )
        self.ttft = Histogram(
            "modelgrid_time_to_first_token_seconds",
            "Time from request start to the first generated token.",
            ["model"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.e2e = Histogram(
            "modelgrid_e2e_request_latency_seconds",
            "Time from request start to the last byte of the response.",
            ["model"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelgrid_queue_depth", "Requests waiting for a replica.", ["model"], registry=r
        )
        self.running = Gauge(
            "modelgrid_requests_running", "Requests generating now.", ["model"], registry=r
        )

        self._models: dict[str, ModelMetrics] = {}
        self._requests: dict[tuple[str, int], Any] = {}
        r.register(
            VllmCollector(
                self.vllm, lambda: _by_model(self.running), lambda: _by_model(self.queue_depth)
            )
        )

    def of(self, model: str) -> ModelMetrics:
        """The series labelled ``model=model`` (cached; ``labels()`` costs a lock and a
        dict lookup per call)."""
        found = self._models.get(model)
        if found is None:
            found = ModelMetrics(
                self.running.labels(model=model),
                self.prompt_tokens.labels(model=model),
                self.completion_tokens.labels(model=model),
                self.ttft.labels(model=model),
                self.e2e.labels(model=model),
            )
            self._models[model] = found
        return found

    def count_request(self, route: str, status: int) -> None:
        """One HTTP response on ``route`` (the route's path template) with ``status``."""
        child = self._requests.get((route, status))
        if child is None:
            child = self._requests[(route, status)] = self.requests.labels(
                route=route, status=str(status)
            )
        child.inc()

    def watch_queue(self, model: str, depth: Callable[[], int]) -> None:
        self.queue_depth.labels(model=model).set_function(lambda: float(depth()))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _by_model(gauge: Gauge) -> list[tuple[str, float]]:
    """A ``model``-labelled gauge's values (read at scrape time, callbacks included)."""
    return [(s.labels["model"], s.value) for m in gauge.collect() for s in m.samples]


__all__ = ["Metrics", "ModelMetrics"]
