"""Prometheus series of the supervised engine processes, read at scrape time.

- ``modelgrid_engine_process_up{model}`` — 1 while the model's engine process serves;
- ``modelgrid_engine_process_restarts_total{model}`` — processes started after the first;
- ``modelgrid_engine_process_crash_loop{model}`` — 1 while it is in a crash loop
  (``engines.process``). How the last process ended is in ``/health/ready``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelgrid.engines.process import EngineProcess


class EngineProcessCollector(Collector):
    """Args: processes: returns the live engine processes by model id."""

    def __init__(self, processes: Callable[[], Mapping[str, EngineProcess]]) -> None:
        self._processes = processes

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "modelgrid_engine_process_up",
            "1 while the model's engine process serves requests.",
            labels=["model"],
        )
        restarts = CounterMetricFamily(
            "modelgrid_engine_process_restarts",
            "Engine processes started after the first (each after a death).",
            labels=["model"],
        )
        loop = GaugeMetricFamily(
            "modelgrid_engine_process_crash_loop",
            "1 while the model's engine process keeps dying soon after each start.",
            labels=["model"],
        )
        for model, process in sorted(self._processes().items()):
            up.add_metric([model], 1.0 if process.ready else 0.0)
            restarts.add_metric([model], float(process.restarts))
            loop.add_metric([model], 1.0 if process.crash_loop else 0.0)
        yield from (up, restarts, loop)


__all__ = ["EngineProcessCollector"]
