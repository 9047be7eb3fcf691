"""The planner: replicas per region and model that meet the latency targets at least cost.

``workload`` (request shapes, arrival processes), ``scenario`` (the inputs, checked),
``inputs`` (the forecast and plan files), ``ledger`` (demand from the usage ledger),
``profile`` / ``profiling`` (engine profiles, measured on the real engine), ``calibration``
/ ``probe`` (what the serving path and shared machines add, measured through the gateway),
``queueing``
(the screens), ``sim`` (the discrete-event simulation over the product's own router),
``search`` / ``verify`` (the cheapest fleet), ``whatif``, ``report``, ``fleet`` (the topology
file). Plain Python: no web framework, no serving, API or engine library imports (the CLI
builds the engine a profile measures and passes it in).
"""

from __future__ import annotations

from modelgrid.planner.errors import PlanInputError
from modelgrid.planner.profile import EngineProfile
from modelgrid.planner.result import Check, ModelPlan, Plan
from modelgrid.planner.scenario import Demand, PlanOptions, Residency, Scenario, Slo
from modelgrid.planner.search import plan
from modelgrid.planner.workload import ArrivalSpec, RequestShape, TokenDist

__all__ = [
    "ArrivalSpec",
    "Check",
    "Demand",
    "EngineProfile",
    "ModelPlan",
    "Plan",
    "PlanInputError",
    "PlanOptions",
    "RequestShape",
    "Residency",
    "Scenario",
    "Slo",
    "TokenDist",
    "plan",
]
