"""Routing: where each request runs — residency, region preference, replica choice, failover.

``topology`` (regions, deployments, replicas; TOML), ``policies`` (pure functions over
snapshots), ``health`` (circuit breakers, probes), ``router`` (pick, residency, bookkeeping),
``engine`` (``RoutedEngine``: the ``Engine`` protocol over a model's replicas, with failover),
``embedding`` (``RoutedEmbeddingEngine``: the same for an embedding model's replicas),
``grid`` (the live topology: replica engines, probes, routed engines). Plain Python: no web
framework, no serving or API imports.
"""

from __future__ import annotations

from modelgrid.routing.embedding import EmbeddingRoute, RoutedEmbeddingEngine
from modelgrid.routing.engine import RoutedEngine, placement_of
from modelgrid.routing.grid import Grid, local_models
from modelgrid.routing.router import REGION_HEADER, Placement, Router
from modelgrid.routing.topology import (
    Deployment,
    Region,
    Replica,
    Topology,
    TopologyError,
    default_topology,
)

__all__ = [
    "REGION_HEADER",
    "Deployment",
    "EmbeddingRoute",
    "Grid",
    "Placement",
    "Region",
    "Replica",
    "RoutedEmbeddingEngine",
    "RoutedEngine",
    "Router",
    "Topology",
    "TopologyError",
    "default_topology",
    "local_models",
    "placement_of",
]
