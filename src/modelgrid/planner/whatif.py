"""What-ifs: the same scenario with a region opened, a region lost, or one region's demand
scaled; each returns a new ``Scenario`` to plan.

Losing a region drains it (``Region.enabled = False``, as ``modelgrid regions set --drain``
does): it holds no replica, but its clients' requests still arrive at its gateway and go to
the next region their residency allows, as the router sends them; demand that no other
region may serve is reported as unserved by the plan.
"""

from __future__ import annotations

import dataclasses

from modelgrid.core.types import jurisdiction_code
from modelgrid.planner.errors import PlanInputError
from modelgrid.planner.inputs import ExtraRegion
from modelgrid.planner.scenario import Demand, Scenario
from modelgrid.routing.topology import Region, Topology, TopologyError


def _known(scenario: Scenario, region: str, option: str) -> Region:
    r = scenario.topology.region(region)
    if r is None:
        known = ", ".join(sorted(scenario.topology.region_ids()))
        raise PlanInputError(f"{option}: unknown region {region!r} (known: {known})", param=option)
    return r


def without_region(scenario: Scenario, region: str) -> Scenario:
    """``region`` lost (drained).

    Raises:
        PlanInputError: no such region.
    """
    r = _known(scenario, region, "--without")
    topology = scenario.topology.with_region(dataclasses.replace(r, enabled=False))
    return dataclasses.replace(scenario, topology=topology)


def add_region(scenario: Scenario, extra: ExtraRegion) -> Scenario:
    """``extra`` opened (a region of the plan file's ``extra_regions``) with its latency
    figures and cost.

    Raises:
        PlanInputError: it exists already, or its latency names an unknown region.
    """
    if scenario.topology.region(extra.id) is not None:
        raise PlanInputError(
            f"--add-region: {extra.id!r} is already a region", param="--add-region"
        )
    try:
        jur = jurisdiction_code(extra.jurisdiction) if extra.jurisdiction else ""
        t: Topology = scenario.topology.with_region(
            Region(extra.id, extra.name, jur, extra.lat, extra.lon)
        )
        latency = dict(t.latency_ms)
        for other, ms in extra.latency_ms.items():
            _known(scenario, other, f"extra_regions.{extra.id}.latency_ms")
            latency[(extra.id, other) if extra.id <= other else (other, extra.id)] = ms
        t = dataclasses.replace(t, latency_ms=latency)
    except (TopologyError, ValueError) as exc:
        raise PlanInputError(f"extra_regions.{extra.id}: {exc}", param="--add-region") from None
    costs = dict(scenario.costs)
    if extra.cost_micros is not None:
        costs[extra.id] = extra.cost_micros
    return dataclasses.replace(scenario, topology=t, costs=costs)


def scale_demand(scenario: Scenario, region: str, factor: float) -> Scenario:
    """Demand arriving at ``region`` multiplied by ``factor``.

    Raises:
        PlanInputError: unknown region, or a negative factor.
    """
    _known(scenario, region, "--scale-demand")
    if not factor >= 0:
        raise PlanInputError(
            f"--scale-demand: the factor for {region} must be >= 0, got {factor}",
            param="--scale-demand",
        )
    demand = tuple(
        Demand(d.workspace, d.region, d.model, d.hour, d.rps * factor) if d.region == region else d
        for d in scenario.demand
    )
    return dataclasses.replace(scenario, demand=demand)


__all__ = ["add_region", "scale_demand", "without_region"]
