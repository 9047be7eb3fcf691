"""vLLM's Prometheus series, so the dashboards people already keep for model servers work on
modelgrid unchanged.

Names, types, the ``model_name`` label and the histogram buckets are vLLM's own
(https://docs.vllm.ai/en/latest/usage/metrics.html; ``vllm/v1/metrics/loggers.py``,
``PrometheusStatLogger``). Each series also carries ``region`` and ``replica`` (where the call
ran: a bounded set, the topology's), and ``workspace`` only where
``observability.workspace_label`` turns it on (one series per workspace and model: for a
deployment with few workspaces). vLLM's ``engine`` label is not emitted: a modelgrid replica
is one engine.

- ``vllm:time_to_first_token_seconds`` (histogram, s): request arrival to first output token;
- ``vllm:inter_token_latency_seconds`` (histogram, s): the gap between output tokens. vLLM
  observes every gap; modelgrid observes each request's mean gap once, ``(end - first token)
  / (output tokens - 1)``, so the hot path pays one observation, not one per token;
- ``vllm:e2e_request_latency_seconds`` (histogram, s): arrival to the response's end;
- ``vllm:request_queue_time_seconds`` (histogram, s): arrival to the start of the model's work
  in this process (authentication, routing, admission). A remote replica's own queue is not
  visible to the gateway: it is part of the time to first token;
- ``vllm:prompt_tokens_total`` / ``vllm:generation_tokens_total`` (counters, tokens);
- ``vllm:prefix_cache_queries_total`` / ``vllm:prefix_cache_hits_total`` (counters, tokens:
  prompt tokens looked up / served from the replica's prefix cache, as the replica reports
  them);
- ``vllm:num_requests_running`` / ``vllm:num_requests_waiting`` (gauges, requests, label
  ``model_name``): the process's running generations and the model's queue, read at scrape
  time.

Cost: a call adds plain float additions and two ``bisect`` look-ups to the counters and
histograms below (no lock, no ``prometheus_client`` child: every call is recorded on the event
loop's thread); the families are built when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# vLLM's buckets (``PrometheusStatLogger``): time to first token; time per output token and
# inter-token latency; and the request latencies (e2e, queue, prefill, decode, inference).
TTFT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS_S = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_BUCKETS_S = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

LABELS = ("model_name", "region", "replica")


@dataclass(slots=True)
class Buckets:
    """A histogram's state: ``counts[i]`` observations in ``(bounds[i-1], bounds[i]]``, the
    last one above every bound (``+Inf``)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(init=False)
    sum: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus' ``le`` buckets (cumulative counts), ``+Inf`` last."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return out


@dataclass(slots=True)
class CallSeries:
    """One label set's counters (tokens) and histograms (seconds)."""

    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    cache_queries: float = 0.0
    cache_hits: float = 0.0
    ttft: Buckets = field(default_factory=lambda: Buckets(TTFT_BUCKETS_S))
    itl: Buckets = field(default_factory=lambda: Buckets(ITL_BUCKETS_S))
    e2e: Buckets = field(default_factory=lambda: Buckets(REQUEST_BUCKETS_S))
    queue: Buckets = field(default_factory=lambda: Buckets(REQUEST_BUCKETS_S))


class VllmMetrics:
    """vLLM-named series of one process (see the module docstring).

    Args:
        workspace_label: Add a ``workspace`` label (the caller's workspace id).
    """

    def __init__(self, *, workspace_label: bool = False) -> None:
        self.workspace_label = workspace_label
        self._series: dict[tuple[str, ...], CallSeries] = {}

    def record(
        self,
        model: str,
        region: str,
        replica: str,
        workspace: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int,
        ttft_s: float | None,
        e2e_s: float,
        queue_s: float | None,
    ) -> None:
        """Add one finished call to its label set's series.

        Args:
            model / region / replica / workspace: The label values (``workspace`` is used
                only with ``workspace_label``).
            prompt_tokens / completion_tokens / cached_tokens: Tokens (cached: the part of
                the prompt the replica served from its prefix cache).
            ttft_s: Arrival to first output token, seconds (``None``: no output).
            e2e_s: Arrival to the response's end, seconds.
            queue_s: Arrival to the start of the model's work, seconds (``None``: unknown).
        """
        key = (
            (model, region, replica, workspace)
            if self.workspace_label
            else (model, region, replica)
        )
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = CallSeries()
        s.prompt_tokens += prompt_tokens
        s.generation_tokens += completion_tokens
        s.cache_queries += prompt_tokens
        s.cache_hits += cached_tokens
        s.e2e.observe(e2e_s)
        if queue_s is not None:
            s.queue.observe(queue_s)
        if ttft_s is not None:
            s.ttft.observe(ttft_s)
            if completion_tokens > 1:
                s.itl.observe(max(e2e_s - ttft_s, 0.0) / (completion_tokens - 1))

    def series(self) -> dict[tuple[str, ...], CallSeries]:
        """The label sets recorded so far (label values in ``labels()``'s order)."""
        return self._series

    def labels(self) -> list[str]:
        return [*LABELS, "workspace"] if self.workspace_label else list(LABELS)


class VllmCollector(Collector):
    """Builds the vLLM families at scrape time.

    Args:
        metrics: The recorded call series.
        running / waiting: Per model id, the requests generating now and the model's queue
            (the process's ``modelgrid_requests_running`` / ``modelgrid_queue_depth``).
    """

    def __init__(
        self,
        metrics: VllmMetrics,
        running: Callable[[], Sequence[tuple[str, float]]],
        waiting: Callable[[], Sequence[tuple[str, float]]],
    ) -> None:
        self._metrics = metrics
        self._running = running
        self._waiting = waiting

    def collect(self) -> Iterator[Metric]:
        labels = self._metrics.labels()
        running = GaugeMetricFamily(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            labels=["model_name"],
        )
        for model, value in self._running():
            running.add_metric([model], value)
        waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            labels=["model_name"],
        )
        for model, value in self._waiting():
            waiting.add_metric([model], value)
        counters = {
            "prompt_tokens": CounterMetricFamily(
                "vllm:prompt_tokens", "Number of prefill tokens processed.", labels=labels
            ),
            "generation_tokens": CounterMetricFamily(
                "vllm:generation_tokens", "Number of generation tokens processed.", labels=labels
            ),
            "cache_queries": CounterMetricFamily(
                "vllm:prefix_cache_queries",
                "Prefix cache queries, in terms of number of queried tokens.",
                labels=labels,
            ),
            "cache_hits": CounterMetricFamily(
                "vllm:prefix_cache_hits",
                "Prefix cache hits, in terms of number of cached tokens.",
                labels=labels,
            ),
        }
        histograms = {
            "ttft": HistogramMetricFamily(
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                labels=labels,
            ),
            "itl": HistogramMetricFamily(
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                labels=labels,
            ),
            "e2e": HistogramMetricFamily(
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                labels=labels,
            ),
            "queue": HistogramMetricFamily(
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                labels=labels,
            ),
        }
        for key, s in sorted(self._metrics.series().items()):
            values = list(key)
            for name, family in counters.items():
                family.add_metric(values, getattr(s, name))
            for name, hist in histograms.items():
                b: Buckets = getattr(s, name)
                hist.add_metric(values, b.cumulative(), b.sum)
        yield running
        yield waiting
        yield from counters.values()
        yield from histograms.values()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the label sets follow the traffic


__all__ = [
    "ITL_BUCKETS_S",
    "LABELS",
    "REQUEST_BUCKETS_S",
    "TTFT_BUCKETS_S",
    "Buckets",
    "CallSeries",
    "VllmCollector",
    "VllmMetrics",
]
