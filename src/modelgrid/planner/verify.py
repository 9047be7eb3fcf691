"""The simulation's part of the search: sizing a region by simulating it, and checking the
whole fleet at its design hours.

A region's traffic classes (those the gateway routes there) share its replicas' FIFO
queues, and with no ``max_concurrency`` set nothing spills to another region, so a region
can be sized alone: simulated with its classes at its busiest hour, the same arrivals for
every size tried, the fewest replicas with which every class meets the targets (from the
screen's estimate, galloping down to the pooled lower bound or up, then bisecting). The whole
fleet is then simulated at the design hours (each region's busiest hour, the busiest hour
overall), and a class that still misses gets one more replica in the busiest region serving
it, until all are met.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from modelgrid.planner.fleet import fleet_topology, hour_streams, sim_duration_s, warmup_s
from modelgrid.planner.result import Check, ModelPlan
from modelgrid.planner.scenario import HOURS, Scenario, TrafficClass
from modelgrid.planner.sim import SimConfig, SimResult, quantile, simulate

MAX_REPLICAS = 256  # per deployment, as the topology file allows
SIZING_REQUESTS = 5_000
MAX_FIXES = 10


def sim_config(scenario: Scenario, model: str, duration_s: float, hour: int) -> SimConfig:
    o = scenario.options
    return SimConfig(
        policy=o.policy,
        gateway_overhead_ms=o.gateway_overhead_ms,
        seed=o.seed + hour,
        warmup_s=warmup_s(scenario, model, duration_s),
    )


def checks(
    scenario: Scenario, model: str, result: SimResult, hour: int
) -> list[tuple[Check, set[str]]]:
    """Each simulated stream against the targets, with the regions that served it."""
    q = scenario.options.quantile
    rows_of: dict[int, list[int]] = {}
    for k, s in enumerate(result.served):
        rows_of.setdefault(s.stream, []).append(k)
    refused = {r[0] for r in result.rejected}
    out = []
    for i, stream in enumerate(result.streams):
        rows = [result.served[k] for k in rows_of.get(i, [])]
        if not rows:
            continue
        ttft = np.fromiter((s.ttft_ms for s in rows), dtype=np.float64, count=len(rows))
        tpot = [s.tpot_ms for s in rows if s.output_tokens > 1] or [0.0]
        p95, t95 = quantile(ttft, q), quantile(tpot, q)
        met = (
            i not in refused and p95 <= scenario.slo.ttft_p95_ms and t95 <= scenario.slo.tpot_p95_ms
        )
        check = Check(
            model, stream.workspace, stream.origin, hour, len(rows),
            quantile(ttft, 0.5), p95, t95, met,
        )  # fmt: skip
        out.append((check, {s.region for s in rows}))
    return out


def size_region(
    scenario: Scenario,
    model: str,
    region: str,
    members: list[TrafficClass],
    estimate: int,
    floor: int,
) -> int | None:
    """The fewest replicas with which ``region`` alone meets the targets for ``members``
    (see the module docstring); ``None`` when even ``MAX_REPLICAS`` do not."""
    load = [sum(c.rps[h] for c in members) for h in range(HOURS)]
    hour = int(np.argmax(load))
    duration = sim_duration_s(scenario, members, hour, max_requests=SIZING_REQUESTS)
    rng = np.random.default_rng([scenario.options.seed, hour, len(members)])
    streams = hour_streams(scenario, members, hour, duration, rng)
    config = sim_config(scenario, model, duration, hour)
    profiles = {model: scenario.profiles[model]}

    def meets(n: int) -> bool:
        topo = fleet_topology(scenario, {(model, region): n})
        result = simulate(topo, streams, profiles, config)
        return all(check.met for check, _ in checks(scenario, model, result, hour))

    return smallest(meets, max(1, min(estimate, MAX_REPLICAS)), max(1, floor), MAX_REPLICAS)


def smallest(meets: Callable[[int], bool], start: int, floor: int, ceiling: int) -> int | None:
    """The smallest ``n`` in ``[floor, ceiling]`` with ``meets(n)``, for a ``meets`` that is
    monotone: from ``start``, galloping down or up, then bisecting (each ``n`` tried once)."""
    known: dict[int, bool] = {}

    def ok(n: int) -> bool:
        if n not in known:
            known[n] = meets(n)
        return known[n]

    start = min(max(start, floor), ceiling)
    if ok(start):
        good, bad, step = start, floor - 1, 1
        while good - step >= floor and ok(good - step):
            good, step = good - step, step * 2
        bad = max(bad, good - step)
    else:
        bad, step = start, max(1, start // 8)
        while True:
            if bad >= ceiling:
                return None
            nxt = min(bad + step, ceiling)
            if ok(nxt):
                good = nxt
                break
            bad, step = nxt, step * 2
    while good - bad > 1:
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


def design_hours(mp: ModelPlan, classes: list[TrafficClass]) -> tuple[int, ...]:
    """The busiest hour overall, then each serving region's busiest (at most four)."""
    by_key = {(c.workspace, c.origin): c for c in classes}
    per_region: dict[str, list[float]] = {}
    for key, region in mp.flows.items():
        acc = per_region.setdefault(region, [0.0] * HOURS)
        for h, rate in enumerate(by_key[key].rps):
            acc[h] += rate
    total = [sum(c.rps[h] for c in classes) for h in range(HOURS)]
    hours = [int(np.argmax(total))] + [int(np.argmax(v)) for v in per_region.values()]
    return tuple(sorted(set(hours), key=lambda h: -total[h])[:4])


def simulate_hour(
    scenario: Scenario, mp: ModelPlan, classes: list[TrafficClass], hour: int
) -> SimResult:
    """The model's whole fleet with its classes' traffic of ``hour``."""
    rng = np.random.default_rng([scenario.options.seed, hour])
    duration = sim_duration_s(scenario, classes, hour)
    streams = hour_streams(scenario, classes, hour, duration, rng)
    topo = fleet_topology(scenario, {(mp.model, r): n for r, n in mp.replicas.items()})
    config = sim_config(scenario, mp.model, duration, hour)
    return simulate(topo, streams, {mp.model: scenario.profiles[mp.model]}, config)


def check_fleet(scenario: Scenario, mp: ModelPlan) -> ModelPlan:
    """Simulate the design hours; add a replica where a class misses (see the module
    docstring). Fills ``mp.design_hours``, ``mp.checks`` and ``mp.sims``."""
    classes = [c for c in scenario.classes(mp.model) if (c.workspace, c.origin) in mp.flows]
    if not classes:
        return mp
    mp.design_hours = design_hours(mp, classes)
    for _ in range(MAX_FIXES):
        mp.checks, misses = [], []
        for hour in mp.design_hours:
            result = simulate_hour(scenario, mp, classes, hour)
            mp.sims[hour] = result
            for check, regions in checks(scenario, mp.model, result, hour):
                mp.checks.append(check)
                if not check.met and regions:
                    misses.append(regions)
        if not misses:
            break
        util: dict[str, list[float]] = {}
        for res in mp.sims.values():
            for rid, u in res.utilisation().items():
                util.setdefault(res.replicas[rid][1], []).append(u)
        grow = {max(rs, key=lambda r: float(np.mean(util.get(r, [0.0])))) for rs in misses}
        grow = {r for r in grow if mp.replicas.get(r, 0) < MAX_REPLICAS}
        if not grow:
            break
        for region in grow:
            mp.replicas[region] = mp.replicas.get(region, 0) + 1
    return mp


__all__ = ["MAX_REPLICAS", "check_fleet", "checks", "design_hours", "size_region", "smallest"]
