"""The search: the cheapest replicas-per-region assignment, per model, that meets the targets.

1. **Where traffic goes.** For a set of regions holding the model, each traffic class
   (workspace, origin) goes where the gateway would send it: the first of its allowed
   regions (``RoutingHints.allows``) that hold the model, ranked by the product's own
   ``policies.rank_regions`` (home region first, then latency from the origin).
2. **How many replicas (screen).** Each region's load is its classes' summed rate at its
   busiest hour; ``planner.queueing`` gives the fewest replicas that keep wait + prefill
   within the TTFT target less the farthest class's round trip and the gateway's overhead,
   at the target quantile: an estimate of the fleet as routed (a queue per replica, power
   of two choices) and a lower bound (one pooled queue, Erlang C).
3. **Which regions.** Every subset of the regions some class may use is screened (up to 12
   regions: 4,095 subsets, each region's figures cached by the classes it gets), else a
   greedy descent from all of them; candidates are ranked by estimated cost (ties: fewer
   replicas, then fewer regions).
4. **Settled by simulation** (``PlanOptions.verify``, ``planner.verify``): the best
   candidates' regions are sized by simulating them; a candidate whose lower-bound cost is
   already above the best simulated cost is pruned; at most ``MAX_SIZED`` are sized. The
   winner is simulated whole at its design hours.

Classes that no region may serve (residency allows none) are reported as unserved.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from modelgrid.planner.errors import PlanInputError
from modelgrid.planner.queueing import min_replicas
from modelgrid.planner.result import ModelPlan, Plan
from modelgrid.planner.scenario import HOURS, Scenario, TrafficClass
from modelgrid.planner.verify import check_fleet, size_region
from modelgrid.routing.policies import RegionSnapshot, rank_regions

EXHAUSTIVE_UP_TO = 12
SCREEN_SAMPLES = 512
MAX_SIZED = 3


def route(scenario: Scenario, cls: TrafficClass, holding: Iterable[str]) -> str | None:
    """The region the gateway at ``cls.origin`` sends ``cls`` to when ``holding`` have the
    model (each with an available replica), or ``None``."""
    held = set(holding)
    snaps = [
        RegionSnapshot(r, scenario.topology.latency(cls.origin, r), available=1)
        for r in scenario.allowed(cls)
        if r in held
    ]
    ranked = rank_regions(snaps, home=cls.hints.home_region)
    return ranked[0] if ranked else None


class _Screen:
    """The queueing screen of one model, cached by (region, classes it gets, bound)."""

    def __init__(self, scenario: Scenario, model: str, classes: list[TrafficClass]) -> None:
        self.s = scenario
        self.classes = classes
        rng = np.random.default_rng(scenario.options.seed)
        shape, profile = scenario.shapes[model], scenario.profiles[model]
        prompts = shape.prompt.sample(rng, SCREEN_SAMPLES)
        outputs = shape.output.sample(rng, SCREEN_SAMPLES)
        self.prefill = profile.prefill_ms(prompts)
        self.service = profile.service_ms(prompts, outputs) / profile.slots
        self.cache: dict[tuple[str, frozenset[int], bool], int | None] = {}

    def replicas(self, region: str, ids: frozenset[int], pooled: bool = False) -> int | None:
        """Replicas ``region`` needs for the classes ``ids``: the estimate of the fleet as
        routed or, ``pooled``, the lower bound; ``None``: no number is enough."""
        key = (region, ids, pooled)
        if key not in self.cache:
            self.cache[key] = self._compute(region, [self.classes[i] for i in ids], pooled)
        return self.cache[key]

    def _compute(self, region: str, members: list[TrafficClass], pooled: bool) -> int | None:
        s, o = self.s, self.s.options
        peak = max(sum(c.rps[h] for c in members) for h in range(HOURS))
        if peak <= 0:
            return 0
        farthest = max(s.rtt_ms(c.origin, region) for c in members if c.peak > 0)
        weights = [c.peak for c in members]
        ca2 = sum(
            w * s.arrival(c.origin, c.model).scv() for w, c in zip(weights, members, strict=True)
        )
        return min_replicas(
            peak,
            self.service,
            self.prefill,
            s.slo.ttft_p95_ms - o.gateway_overhead_ms - farthest,
            ca2=ca2 / max(sum(weights), 1e-12),
            q=o.quantile,
            max_utilisation=o.max_utilisation,
            pooled=pooled,
            choices=1 if o.policy == "round_robin" else 2,
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A set of regions holding the model, as screened."""

    members: dict[str, frozenset[int]]  # region -> the classes it serves
    estimate: dict[str, int]
    lower: dict[str, int]

    def cost(self, scenario: Scenario, counts: dict[str, int]) -> tuple[int, int, int]:
        return (
            sum(scenario.cost(r) * n for r, n in counts.items()),
            sum(counts.values()),
            len([n for n in counts.values() if n > 0]),
        )


def _screen_set(
    scenario: Scenario, classes: list[TrafficClass], screen: _Screen, holding: tuple[str, ...]
) -> Candidate | None:
    members: dict[str, set[int]] = {}
    for i, c in enumerate(classes):
        r = route(scenario, c, holding)
        if r is None:
            return None
        members.setdefault(r, set()).add(i)
    frozen = {r: frozenset(ids) for r, ids in members.items()}
    estimate, lower = {}, {}
    for region, ids in frozen.items():
        n = screen.replicas(region, ids)
        if n is None:
            return None
        estimate[region] = n
        lower[region] = screen.replicas(region, ids, pooled=True) or 1
    return Candidate(frozen, estimate, lower)


def candidates(scenario: Scenario, model: str, classes: list[TrafficClass]) -> list[Candidate]:
    """Feasible region sets by estimated cost, best first (see the module docstring)."""
    usable = sorted({r for c in classes for r in scenario.allowed(c)})
    screen = _Screen(scenario, model, classes)
    found: dict[frozenset[str], Candidate] = {}

    def consider(holding: tuple[str, ...]) -> Candidate | None:
        got = _screen_set(scenario, classes, screen, holding)
        if got is not None:
            found.setdefault(frozenset(got.members), got)
        return got

    if len(usable) <= EXHAUSTIVE_UP_TO:
        for k in range(1, len(usable) + 1):
            for sub in itertools.combinations(usable, k):
                consider(sub)
    else:
        holding = tuple(usable)
        current = consider(holding)
        while current is not None:
            options = [
                (fewer, got)
                for r in holding
                if (fewer := tuple(x for x in holding if x != r))
                and (got := consider(fewer)) is not None
            ]
            if not options:
                break
            fewer, best = min(options, key=lambda o: o[1].cost(scenario, o[1].estimate))
            if best.cost(scenario, best.estimate) >= current.cost(scenario, current.estimate):
                break
            holding, current = fewer, best
    return sorted(found.values(), key=lambda c: c.cost(scenario, c.estimate))


def plan_model(scenario: Scenario, model: str) -> ModelPlan:
    """The plan of one model (steps 1-4 of the module docstring).

    Raises:
        PlanInputError: no set of regions meets the TTFT target.
    """
    every = scenario.classes(model)
    unserved = [c for c in every if not scenario.allowed(c)]
    classes = [c for c in every if scenario.allowed(c)]
    if not classes:
        return ModelPlan(model, {}, {}, unserved, {})
    ranked = candidates(scenario, model, classes)
    if not ranked:
        raise PlanInputError(
            f"slo.ttft_p95_ms: no fleet of {model} meets {scenario.slo.ttft_p95_ms:g} ms at "
            "the target percentile: the prefill and the round trips leave no time to queue",
            param="slo.ttft_p95_ms",
        )
    chosen, counts, sized = ranked[0], dict(ranked[0].estimate), 0
    if scenario.options.verify:
        chosen, counts, sized = _settle(scenario, model, classes, ranked)
    flows = {
        (classes[i].workspace, classes[i].origin): r
        for r, ids in chosen.members.items()
        for i in ids
    }
    mp = ModelPlan(
        model,
        {r: n for r, n in counts.items() if n > 0},
        flows,
        unserved,
        dict(chosen.estimate),
        dict(chosen.lower),
        sized=sized,
    )
    return check_fleet(scenario, mp) if scenario.options.verify else mp


def _settle(
    scenario: Scenario, model: str, classes: list[TrafficClass], ranked: list[Candidate]
) -> tuple[Candidate, dict[str, int], int]:
    """Size the best candidates by simulation (pruned by their lower bounds)."""
    sized_regions: dict[tuple[str, frozenset[int]], int | None] = {}
    best: tuple[Candidate, dict[str, int]] | None = None
    sized = 0
    for cand in ranked:
        if sized >= MAX_SIZED:
            break
        if best is not None and cand.cost(scenario, cand.lower) >= cand.cost(scenario, best[1]):
            continue
        counts: dict[str, int] = {}
        for region, ids in cand.members.items():
            key = (region, ids)
            if key not in sized_regions:
                members = [classes[i] for i in ids]
                sized_regions[key] = size_region(
                    scenario, model, region, members, cand.estimate[region], cand.lower[region]
                )
            n = sized_regions[key]
            if n is None:
                break
            counts[region] = n
        sized += 1
        if len(counts) == len(cand.members) and (
            best is None or cand.cost(scenario, counts) < best[0].cost(scenario, best[1])
        ):
            best = (cand, counts)
    if best is None:
        raise PlanInputError(
            f"slo.ttft_p95_ms: no fleet of {model} of up to 256 replicas a region meets "
            f"{scenario.slo.ttft_p95_ms:g} ms in simulation",
            param="slo.ttft_p95_ms",
        )
    return best[0], best[1], sized


def plan(scenario: Scenario) -> Plan:
    """The plan of ``scenario`` (checked first; see the module docstring).

    Raises:
        PlanInputError: bad input, or a target no fleet meets.
    """
    scenario.check()
    return Plan(scenario, {m: plan_model(scenario, m) for m in scenario.models()})


__all__ = ["Candidate", "candidates", "plan", "plan_model", "route"]
