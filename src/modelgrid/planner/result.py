"""What a plan is: replicas per (model, region), where each traffic class goes, and how the
simulation found the fleet at its design hours."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelgrid.planner.fleet import cost_micros, fleet_topology, replicas_total
from modelgrid.planner.scenario import Scenario, TrafficClass
from modelgrid.planner.sim import SimResult
from modelgrid.routing.topology import Topology


@dataclass(frozen=True, slots=True)
class Check:
    """A traffic class at one design hour, as simulated (times in ms)."""

    model: str
    workspace: str
    origin: str
    hour: int
    requests: int
    ttft_p50_ms: float
    ttft_p95_ms: float
    tpot_p95_ms: float
    met: bool


@dataclass
class ModelPlan:
    """One model's plan.

    Attributes:
        replicas: Replicas by region (regions without any left out).
        flows: Serving region of each (workspace, origin) class.
        unserved: Classes residency lets no candidate region serve.
        screened: Replicas by region as the queueing screen estimated them.
        lower: The screen's lower bound by region (one pooled queue).
        design_hours: Hours the whole fleet was simulated at.
        checks: Each class at each design hour.
        sims: The simulations of the design hours.
        sized: Region sets whose sizes the simulation settled (for the report).
    """

    model: str
    replicas: dict[str, int]
    flows: dict[tuple[str, str], str]
    unserved: list[TrafficClass]
    screened: dict[str, int]
    lower: dict[str, int] = field(default_factory=dict)
    design_hours: tuple[int, ...] = ()
    checks: list[Check] = field(default_factory=list)
    sims: dict[int, SimResult] = field(default_factory=dict)
    sized: int = 0


@dataclass
class Plan:
    """The fleet: a ``ModelPlan`` per model."""

    scenario: Scenario
    models: dict[str, ModelPlan]

    def counts(self) -> dict[tuple[str, str], int]:
        return {(m, r): n for m, mp in self.models.items() for r, n in mp.replicas.items()}

    def cost_micros_per_hour(self) -> int:
        return cost_micros(self.scenario, self.counts())

    def replicas(self) -> int:
        return replicas_total(self.counts())

    def met(self) -> bool:
        """Every simulated class met the targets (true when nothing was simulated)."""
        return all(c.met for mp in self.models.values() for c in mp.checks)

    def unserved(self) -> list[TrafficClass]:
        return [c for mp in self.models.values() for c in mp.unserved]

    def topology(self) -> Topology:
        """The fleet as the gateway's topology (``routing.topology.save`` writes it)."""
        return fleet_topology(self.scenario, self.counts())


__all__ = ["Check", "ModelPlan", "Plan"]
