"""``GridCapacity``: how busy online traffic keeps a model, for the batch runner.

The router counts every request in flight on each replica (``HealthBook``, from the moment
the routed engine starts streaming until it ends, waiting for an engine slot included); the
runner's own lines are among them, so online traffic is the rest.
"""

from __future__ import annotations

from modelgrid.routing import Grid


class GridCapacity:
    """The ``jobs.batch_runner.Capacity`` of a gateway's grid."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid

    def online_busy(self, model: str, batch_running: int) -> bool:
        t = self._grid.topology
        health = self._grid.router.health
        in_flight = sum(
            health.of(r.id).in_flight for d in t.deployments_of(model) for r in d.replicas
        )
        return in_flight > batch_running


__all__ = ["GridCapacity"]
