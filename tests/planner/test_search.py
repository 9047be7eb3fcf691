"""The search: residency, what-ifs, unserved demand, the simulation's settling."""

from __future__ import annotations

import pytest

from modelgrid.planner import Demand, PlanInputError, PlanOptions, Slo, plan
from modelgrid.planner.inputs import ExtraRegion
from modelgrid.planner.whatif import add_region, scale_demand, without_region
from modelgrid.routing.topology import loads
from tests.planner.scenarios import EU_ONLY, MODEL, scenario


def test_eu_only_traffic_stays_in_the_eu() -> None:
    demand = [Demand("eu", "us-east-1", MODEL, h, 1.0) for h in range(24)]
    demand += [Demand("acme", "us-east-1", MODEL, h, 1.0) for h in range(24)]
    p = plan(scenario(demand, workspaces={"eu": EU_ONLY}))
    flows = p.models[MODEL].flows
    assert flows[("eu", "us-east-1")] in {"eu-west-1", "eu-central-1"}  # IE or DE
    # acme has no rule: pooled with the EU traffic (one region is cheaper at this load)
    assert flows[("acme", "us-east-1")] == flows[("eu", "us-east-1")]
    assert set(p.models[MODEL].replicas) == {flows[("eu", "us-east-1")]}


def test_losing_a_region_moves_its_demand_to_allowed_regions_only() -> None:
    demand = [Demand("eu", "eu-west-1", MODEL, h, 1.0) for h in range(24)]
    demand += [Demand("acme", "eu-west-1", MODEL, h, 1.0) for h in range(24)]
    s = scenario(demand, workspaces={"eu": EU_ONLY})
    p = plan(without_region(s, "eu-west-1"))
    flows = p.models[MODEL].flows
    assert flows[("eu", "eu-west-1")] == "eu-central-1"
    assert "eu-west-1" not in p.models[MODEL].replicas
    p2 = plan(without_region(without_region(s, "eu-west-1"), "eu-central-1"))
    assert [(c.workspace, c.origin) for c in p2.unserved()] == [("eu", "eu-west-1")]


def test_more_demand_in_a_region_adds_replicas_there() -> None:
    s = scenario()
    base, doubled = plan(s), plan(scale_demand(s, "us-east-1", 2.0))
    assert doubled.models[MODEL].replicas["us-east-1"] > base.models[MODEL].replicas["us-east-1"]
    assert doubled.cost_micros_per_hour() > base.cost_micros_per_hour()


def test_opening_a_cheaper_region_near_the_demand() -> None:
    demand = [Demand("acme", "us-east-1", MODEL, h, 3.0) for h in range(24)]
    s = scenario(demand, costs={"us-east-1": 2_000_000})
    mx = ExtraRegion(id="mx-central-1", jurisdiction="MX", lat=19.4, lon=-99.1,
                     latency_ms={"us-east-1": 30.0}, cost_micros=500_000)  # fmt: skip
    p = plan(add_region(s, mx))
    assert set(p.models[MODEL].replicas) == {"mx-central-1"}
    with pytest.raises(PlanInputError, match="already a region"):
        add_region(add_region(s, mx), mx)


def test_the_plan_writes_a_topology_the_gateway_reads() -> None:
    from modelgrid.routing.topology import dumps

    p = plan(scenario())
    t = loads(dumps(p.topology()))
    assert {(d.region, len(d.replicas)) for d in t.deployments} == {
        (r, n) for (_, r), n in p.counts().items()
    }
    assert all(r.base_url and r.base_url.startswith("http://") for _, r in t.replicas())


def test_verified_plans_meet_the_targets_in_simulation() -> None:
    demand = [Demand("acme", r, MODEL, 12, 2.0) for r in ("eu-west-1", "us-east-1")]
    p = plan(
        scenario(
            demand, options=PlanOptions(sim_requests=300), slo=Slo(ttft_p95_ms=800, tpot_p95_ms=50)
        )
    )
    mp = p.models[MODEL]
    assert mp.checks and all(c.met for c in mp.checks)
    assert all(c.ttft_p95_ms <= 800 for c in mp.checks)
    assert mp.design_hours == (12,)
    assert sum(mp.replicas.values()) >= sum(mp.lower.values())  # never below the pooled bound


def test_replicas_that_share_a_machine_are_planned_with_its_slowdown() -> None:
    """The same demand with a profile whose calibration found two replicas to a machine,
    1.6x slower while both are busy: the simulation-sized plan needs more replicas than with
    a machine per replica (the queueing screens alone do not see the slowdown)."""
    from tests.planner.scenarios import PROFILE

    demand = [Demand("acme", "us-east-1", MODEL, h, 4.0) for h in range(24)]
    alone = plan(scenario(demand, verify=True))
    packed = {MODEL: PROFILE.model_copy(update={"host_slowdown": (1.0, 1.6)})}
    shared = plan(scenario(demand, verify=True, profiles=packed))
    n_alone, n_shared = alone.models[MODEL].replicas, shared.models[MODEL].replicas
    assert set(n_alone) == set(n_shared) == {"us-east-1"}
    assert n_shared["us-east-1"] > n_alone["us-east-1"] >= 2
    assert all(c.met for c in shared.models[MODEL].checks)
