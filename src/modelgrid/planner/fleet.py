"""From a plan's replica counts to what the gateway and the simulation run: the topology
(the same ``routing.topology.Topology`` the gateway reads, written with its ``save``) and the
simulated traffic of one hour.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelgrid.planner.scenario import Scenario, TrafficClass
from modelgrid.planner.sim import Stream
from modelgrid.routing.topology import Deployment, Replica, Topology


def fleet_topology(scenario: Scenario, counts: Mapping[tuple[str, str], int]) -> Topology:
    """The scenario's regions and latency with ``counts[(model, region)]`` upstream replicas
    of each model in each region (``PlanOptions.url_template`` gives their base URLs; their
    ids are ``<region>/<model>/<n>``, as the gateway names replicas without one)."""
    o = scenario.options
    deployments = []
    for (model, region), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if n <= 0:
            continue
        replicas = tuple(
            Replica(
                id=f"{region}/{model}/{i}",
                kind="upstream",
                base_url=o.url_template.format(region=region, model=model, index=i),
                max_concurrency=o.max_concurrency,
            )
            for i in range(n)
        )
        deployments.append(Deployment(model, region, replicas))
    t = scenario.topology
    return Topology(t.regions, tuple(deployments), t.gateway_region, t.latency_ms)


def sim_duration_s(
    scenario: Scenario, classes: list[TrafficClass], hour: int, *, max_requests: int = 20_000
) -> float:
    """How long to simulate an hour's traffic: long enough that the smallest stream has
    ``sim_requests`` requests, at least 60 s, and at most ``max_requests`` requests in all."""
    rates = [c.rps[hour] for c in classes if c.rps[hour] > 0]
    if not rates:
        return 0.0
    want = scenario.options.sim_requests / min(rates)
    cap = max_requests / sum(rates)
    return max(60.0, min(want, cap, 7 * 24 * 3600.0))


def hour_streams(
    scenario: Scenario,
    classes: list[TrafficClass],
    hour: int,
    duration_s: float,
    rng: np.random.Generator,
) -> list[Stream]:
    """One stream per class at its rate in ``hour``: arrival times from the (region, model)'s
    arrival process, prompt and output lengths drawn from the model's shape."""
    out = []
    for c in classes:
        rate = c.rps[hour]
        if rate <= 0:
            continue
        times = scenario.arrival(c.origin, c.model).times(rate, duration_s, rng)
        shape = scenario.shapes[c.model]
        n = len(times)
        out.append(
            Stream(
                origin=c.origin,
                model=c.model,
                workspace=c.workspace,
                hints=c.hints,
                arrivals_s=times,
                prompt_tokens=shape.prompt.sample(rng, n),
                output_tokens=shape.output.sample(rng, n),
            )
        )
    return out


def warmup_s(scenario: Scenario, model: str, duration_s: float) -> float:
    """Time the simulated fleet gets to fill its queues before requests count: a tenth of
    the run, at least 20 mean service times."""
    shape, profile = scenario.shapes[model], scenario.profiles[model]
    mean_ms = float(profile.service_ms(shape.prompt.expected(), shape.output.expected()))
    return min(duration_s / 2, max(duration_s / 10, 20 * mean_ms / 1000))


def replicas_total(counts: Mapping[tuple[str, str], int]) -> int:
    return sum(n for n in counts.values() if n > 0)


def cost_micros(scenario: Scenario, counts: Mapping[tuple[str, str], int]) -> int:
    """Cost per hour of the replicas (micro-units of the scenario's currency)."""
    return sum(scenario.cost(region) * n for (_, region), n in counts.items() if n > 0)


__all__ = [
    "cost_micros",
    "fleet_topology",
    "hour_streams",
    "replicas_total",
    "sim_duration_s",
    "warmup_s",
]
