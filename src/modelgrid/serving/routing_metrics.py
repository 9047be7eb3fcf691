"""Prometheus series of the router, read from its live state at scrape time.

Nothing on the request path: the router already keeps per-replica counts, in-flight
requests, breaker states and probe results (``routing.health``); this collector turns them
into series when ``/metrics`` is scraped. Replica series carry ``model``, ``region`` and
``replica`` labels from the current topology (a replica that left it is no longer shown).

Series (Prometheus naming: https://prometheus.io/docs/practices/naming/):

- ``modelgrid_replica_requests_total{outcome}`` — attempts that ended ``success`` (the
  replica answered, a 4xx about the request included), ``failure`` (connection, 5xx, dropped
  stream: counts against its breaker) or ``abandoned`` (the client went away);
- ``modelgrid_replica_in_flight`` — attempts running now;
- ``modelgrid_replica_circuit_state`` — 0 closed, 1 half-open, 2 open;
- ``modelgrid_replica_probe_up`` — 1/0 by the last active probe (absent before the first);
- ``modelgrid_replica_probe_rtt_seconds`` — probe round trip (moving average);
- ``modelgrid_replica_probe_failures_total`` — active probes that failed (they count against
  the breaker like failed requests, but are not requests);
- ``modelgrid_failovers_total{model}`` — requests moved to another replica or region after
  a failure before their first byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelgrid.routing.health import BreakerState
from modelgrid.routing.router import Router

_BREAKER_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
_LABELS = ["model", "region", "replica"]


class RoutingCollector(Collector):
    """Args: router: returns the live router (``None`` before the app has started)."""

    def __init__(self, router: Callable[[], Router | None]) -> None:
        self._router = router

    def collect(self) -> Iterator[Metric]:
        router = self._router()
        if router is None:
            return
        requests = CounterMetricFamily(
            "modelgrid_replica_requests",
            "Attempts sent to a replica, by how they ended.",
            labels=[*_LABELS, "outcome"],
        )
        in_flight = GaugeMetricFamily(
            "modelgrid_replica_in_flight", "Attempts running on a replica now.", labels=_LABELS
        )
        breaker = GaugeMetricFamily(
            "modelgrid_replica_circuit_state",
            "Circuit breaker of a replica: 0 closed, 1 half-open, 2 open.",
            labels=_LABELS,
        )
        up = GaugeMetricFamily(
            "modelgrid_replica_probe_up",
            "Last active probe answered (1) or not (0).",
            labels=_LABELS,
        )
        rtt = GaugeMetricFamily(
            "modelgrid_replica_probe_rtt_seconds",
            "Probe round trip to a replica (exponentially weighted moving average).",
            labels=_LABELS,
        )
        probe_failures = CounterMetricFamily(
            "modelgrid_replica_probe_failures",
            "Active health probes of a replica that failed.",
            labels=_LABELS,
        )
        for deployment, replica in router.topology.replicas():
            h = router.health.replicas.get(replica.id)
            if h is None:
                continue
            labels = [deployment.model, deployment.region, replica.id]
            requests.add_metric([*labels, "success"], h.served)
            requests.add_metric([*labels, "failure"], h.failed)
            requests.add_metric([*labels, "abandoned"], h.abandoned)
            in_flight.add_metric(labels, h.in_flight)
            breaker.add_metric(labels, _BREAKER_VALUE[h.breaker.state])
            if h.last_probe_ok is not None:
                up.add_metric(labels, 1.0 if h.last_probe_ok else 0.0)
            if h.rtt_ms is not None:
                rtt.add_metric(labels, h.rtt_ms / 1000)
            probe_failures.add_metric(labels, h.probe_failures)
        failovers = CounterMetricFamily(
            "modelgrid_failovers",
            "Requests moved to another replica after a failure before their first byte.",
            labels=["model"],
        )
        for model, count in sorted(router.failovers.items()):
            failovers.add_metric([model], count)
        yield from (requests, in_flight, breaker, up, rtt, probe_failures, failovers)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no fixed description: the series follow the topology


__all__ = ["RoutingCollector"]
