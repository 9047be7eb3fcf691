"""Small planning scenarios shared by the planner's tests."""

from __future__ import annotations

from typing import Any

from modelgrid.planner import (
    ArrivalSpec,
    Demand,
    PlanOptions,
    RequestShape,
    Residency,
    Scenario,
    Slo,
    TokenDist,
)
from modelgrid.planner.profile import synthetic
from modelgrid.routing.topology import Region, Topology

MODEL = "m"
REGIONS = (
    Region("eu-west-1", "Ireland", "IE", 53.35, -6.26),
    Region("eu-central-1", "Frankfurt", "DE", 50.11, 8.68),
    Region("us-east-1", "Virginia", "US", 38.9, -77.0),
    Region("ap-southeast-1", "Singapore", "SG", 1.29, 103.85),
)
PROFILE = synthetic(MODEL, prefill_base_ms=20.0, prefill_per_token_ms=0.5, decode_ms=10.0)
SHAPE = RequestShape(prompt=TokenDist.lognormal(200, 0.5), output=TokenDist.lognormal(40, 0.5))


def topology(regions: tuple[Region, ...] = REGIONS) -> Topology:
    return Topology(regions, gateway_region=regions[0].id)


def scenario(
    demand: list[Demand] | None = None,
    *,
    workspaces: dict[str, Residency] | None = None,
    regions: tuple[Region, ...] = REGIONS,
    verify: bool = False,
    **fields: Any,
) -> Scenario:
    rows = demand if demand is not None else [
        Demand("acme", r.id, MODEL, h, 2.0) for r in regions for h in range(24)
    ]  # fmt: skip
    return Scenario(
        topology=topology(regions),
        demand=tuple(rows),
        shapes={MODEL: SHAPE},
        profiles=fields.pop("profiles", {MODEL: PROFILE}),
        workspaces=workspaces or {},
        slo=fields.pop("slo", Slo(ttft_p95_ms=400, tpot_p95_ms=50)),
        options=fields.pop("options", PlanOptions(verify=verify, sim_requests=300)),
        default_arrivals=fields.pop("default_arrivals", ArrivalSpec()),
        **fields,
    )


EU_ONLY = Residency(name="eu", allowed_jurisdictions=("IE", "DE"), home_region="eu-west-1")
