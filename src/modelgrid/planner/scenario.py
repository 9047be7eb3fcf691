"""A planning scenario: everything the search and the simulation need, checked once.

- the topology's regions (jurisdiction, location) and inter-region latency matrix
  (``routing.topology.Topology``; its deployments are what the plan replaces);
- demand: requests per second by (workspace, origin region, model, hour of day, UTC), the
  origin being the region whose gateway receives them (clients near it);
- request shapes per model and the arrival process per stream (``planner.workload``);
- each workspace's residency rules (the same ``RoutingHints`` the gateway builds);
- engine profiles per model, the cost of a replica-hour per region, service-level targets.

``Scenario.check`` refuses what cannot be planned, naming the input: demand for a model
without a profile or in a region the topology lacks, an unknown workspace, a negative rate,
a target no fleet can meet (decode slower than the time-per-token target; a stream whose
every allowed region is further than the TTFT target allows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from modelgrid.core.types import RoutingHints
from modelgrid.planner.errors import PlanInputError
from modelgrid.planner.profile import EngineProfile
from modelgrid.planner.workload import POISSON, ArrivalSpec, RequestShape
from modelgrid.routing.topology import Topology

HOURS = 24


@dataclass(frozen=True, slots=True)
class Demand:
    """Requests per second of one workspace, arriving at one region's gateway, for one model,
    in one hour of the day (UTC)."""

    workspace: str
    region: str
    model: str
    hour: int
    rps: float


class Slo(BaseModel):
    """Service-level targets, met by each origin region's traffic of each model.

    Attributes:
        ttft_p95_ms: Time to first token, 95th percentile, as the client sees it (network
            round trip to the serving region included).
        tpot_p95_ms: Time per output token after the first, 95th percentile.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttft_p95_ms: Annotated[float, Field(gt=0)] = 2000.0
    tpot_p95_ms: Annotated[float, Field(gt=0)] = 200.0


class Residency(BaseModel):
    """A workspace's residency rules (``None``: any), as the gateway applies them.

    Attributes:
        name: Workspace name (or id).
        home_region: Preferred region, after a requested one.
        allowed_regions: Region ids its requests may run in.
        allowed_jurisdictions: Jurisdiction codes whose regions they may run in.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    home_region: str | None = None
    allowed_regions: tuple[str, ...] | None = None
    allowed_jurisdictions: tuple[str, ...] | None = None

    def hints(self) -> RoutingHints:
        """The routing hints of this workspace's requests (no key narrows them)."""
        return RoutingHints(
            allowed_regions=None
            if self.allowed_regions is None
            else frozenset(self.allowed_regions),
            allowed_jurisdictions=None
            if self.allowed_jurisdictions is None
            else frozenset(j.upper() for j in self.allowed_jurisdictions),
            home_region=self.home_region,
        )


class PlanOptions(BaseModel):
    """How the plan is searched and checked.

    Attributes:
        policy: The router's replica policy the simulation runs (``routing.policies``).
        gateway_overhead_ms: Time the gateway adds to a request (auth, routing, metering).
        max_concurrency: ``max_concurrency`` written for each planned replica (``None``:
            never saturated, so traffic never spills to a further region).
        url_template: Base URL of each planned replica in the topology file (``{region}``,
            ``{model}``, ``{index}``): where you will start its ``modelgrid engine``.
        verify: Check the screened plan by simulation (and add replicas where it misses).
        sim_requests: Requests per origin stream the simulation aims at (the p95's sample).
        seed: Randomness of the simulation.
        quantile: The percentile the targets are on (0.95).
        max_utilisation: Highest planned utilisation of a replica.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["cache_aware", "p2c", "round_robin"] = "cache_aware"
    gateway_overhead_ms: Annotated[float, Field(ge=0)] = 1.0
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    url_template: str = "http://{model}-{index}.{region}.internal:9001/v1"
    verify: bool = True
    sim_requests: Annotated[int, Field(ge=50)] = 1000
    seed: int = 0
    quantile: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    max_utilisation: Annotated[float, Field(gt=0, le=1)] = 0.98


@dataclass(frozen=True, slots=True)
class TrafficClass:
    """The demand of one workspace at one origin for one model, over the hours."""

    model: str
    workspace: str
    origin: str
    rps: tuple[float, ...]  # by hour of day
    hints: RoutingHints

    @property
    def peak(self) -> float:
        return max(self.rps)


@dataclass(frozen=True)
class Scenario:
    """The inputs of one plan (see the module docstring).

    Attributes:
        topology: Regions, jurisdictions, latency; a drained region (``enabled = False``)
            takes no replicas (its clients' traffic still arrives there).
        demand: The demand rows.
        shapes: Request shape per model.
        profiles: Engine profile per model.
        workspaces: Residency rules by workspace (a workspace not listed: no rules).
        costs: Micro-units of ``currency`` per replica-hour by region (``default_cost`` else).
        slo: The targets.
        arrivals: Arrival process by (region, model), else ``default_arrivals``.
    """

    topology: Topology
    demand: tuple[Demand, ...]
    shapes: Mapping[str, RequestShape]
    profiles: Mapping[str, EngineProfile]
    workspaces: Mapping[str, Residency] = field(default_factory=dict)
    costs: Mapping[str, int] = field(default_factory=dict)
    default_cost: int = 1_000_000
    currency: str = "USD"
    slo: Slo = field(default_factory=Slo)
    options: PlanOptions = field(default_factory=PlanOptions)
    arrivals: Mapping[tuple[str, str], ArrivalSpec] = field(default_factory=dict)
    default_arrivals: ArrivalSpec = POISSON

    def models(self) -> list[str]:
        return list(dict.fromkeys(d.model for d in self.demand))

    def cost(self, region: str) -> int:
        return self.costs.get(region, self.default_cost)

    def arrival(self, region: str, model: str) -> ArrivalSpec:
        return self.arrivals.get((region, model), self.default_arrivals)

    def candidates(self) -> list[str]:
        """Regions that may hold replicas: the topology's enabled ones."""
        return [r.id for r in self.topology.regions if r.enabled]

    def jurisdiction(self, region: str) -> str:
        r = self.topology.region(region)
        return r.jurisdiction if r is not None else ""

    def hints(self, workspace: str) -> RoutingHints:
        rules = self.workspaces.get(workspace)
        return rules.hints() if rules is not None else RoutingHints()

    def allowed(self, cls: TrafficClass) -> list[str]:
        """The candidate regions residency lets ``cls`` run in (``RoutingHints.allows``)."""
        return [r for r in self.candidates() if cls.hints.allows(r, self.jurisdiction(r))]

    def rtt_ms(self, a: str, b: str) -> float:
        """Expected round trip between two regions (``Topology.latency``; unknown: 0)."""
        ms = self.topology.latency(a, b)
        return 0.0 if ms is None else ms

    def classes(self, model: str) -> list[TrafficClass]:
        """The model's demand grouped by (workspace, origin), rates by hour."""
        by: dict[tuple[str, str], list[float]] = {}
        for d in self.demand:
            if d.model == model:
                by.setdefault((d.workspace, d.region), [0.0] * HOURS)[d.hour] += d.rps
        return [
            TrafficClass(model, ws, origin, tuple(rates), self.hints(ws))
            for (ws, origin), rates in sorted(by.items())
            if max(rates) > 0
        ]

    def check(self) -> None:
        """Refuse what cannot be planned (see the module docstring).

        Raises:
            PlanInputError: naming the input at fault.
        """
        known = self.topology.region_ids()
        for i, d in enumerate(self.demand):
            where = f"demand[{i}]"
            if d.rps < 0 or not np.isfinite(d.rps):
                raise PlanInputError(
                    f"{where}.rps: a rate must be a finite number >= 0, got {d.rps} "
                    f"({d.workspace}, {d.region}, {d.model})",
                    param=f"{where}.rps",
                )
            if d.region not in known:
                raise PlanInputError(
                    f"{where}.region: unknown region {d.region!r} (the topology has "
                    f"{', '.join(sorted(known))})",
                    param=f"{where}.region",
                )
            if d.model not in self.profiles:
                raise PlanInputError(
                    f"{where}.model: no engine profile for model {d.model!r} (profiles: "
                    f"{', '.join(sorted(self.profiles)) or 'none'}; run `modelgrid plan "
                    f"profile --model {d.model}` for a packaged model, or give --profile "
                    f"{d.model}=PATH)",
                    param=f"{where}.model",
                )
            if d.model not in self.shapes:
                raise PlanInputError(
                    f"{where}.model: no request shape for model {d.model!r}",
                    param=f"{where}.model",
                )
            if not 0 <= d.hour < HOURS:
                raise PlanInputError(f"{where}.hour: 0 to 23, got {d.hour}", param=where)
        for name, rules in self.workspaces.items():
            for r in rules.allowed_regions or ():
                if r not in known:
                    raise PlanInputError(
                        f"workspace {name}: allowed_regions names unknown region {r!r}",
                        param=f"workspaces.{name}",
                    )
        for region in self.costs:
            if region not in known:
                raise PlanInputError(f"costs: unknown region {region!r}", param=f"costs.{region}")
        self._check_reachable()

    def _check_reachable(self) -> None:
        q = self.options.quantile
        for model in self.models():
            profile, shape = self.profiles[model], self.shapes[model]
            rng = np.random.default_rng(0)
            prompts, outputs = shape.prompt.sample(rng, 2000), shape.output.sample(rng, 2000)
            tpot = float(np.quantile(profile.decode_ms(prompts, outputs), q))
            if tpot > self.slo.tpot_p95_ms:
                raise PlanInputError(
                    f"slo.tpot_p95_ms: unreachable for {model}: a replica decodes at "
                    f"{tpot:.1f} ms per token (p{round(q * 100)}), over the target "
                    f"{self.slo.tpot_p95_ms:g} ms; no number of replicas changes that",
                    param="slo.tpot_p95_ms",
                )
            prefill = float(np.quantile(profile.prefill_ms(prompts), q))
            for cls in self.classes(model):
                allowed = self.allowed(cls)
                if not allowed:
                    continue  # unservable by residency: reported by the plan, not refused
                best = min(self.rtt_ms(cls.origin, r) for r in allowed)
                floor = best + self.options.gateway_overhead_ms + prefill
                if floor > self.slo.ttft_p95_ms:
                    raise PlanInputError(
                        f"slo.ttft_p95_ms: unreachable for {model} from {cls.origin} "
                        f"(workspace {cls.workspace}): the nearest allowed region is {best:g} "
                        f"ms away and the prefill alone takes {prefill:.0f} ms (p"
                        f"{round(q * 100)}): {floor:.0f} ms > {self.slo.ttft_p95_ms:g} ms",
                        param="slo.ttft_p95_ms",
                    )


__all__ = ["HOURS", "Demand", "PlanOptions", "Residency", "Scenario", "Slo", "TrafficClass"]
