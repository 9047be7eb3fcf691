"""Routing policies: power of two choices, prefix affinity, region ranking, round robin."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from modelgrid.routing.policies import (
    RegionSnapshot,
    ReplicaSnapshot,
    choose_replica,
    power_of_two,
    prefix_affinity,
    rank_regions,
    round_robin,
)


def snap(rid: str, load: int = 0, *, available: bool = True, cap: int | None = None):
    return ReplicaSnapshot(rid, "r", available=available, in_flight=load, max_concurrency=cap)


def test_power_of_two_takes_the_less_loaded_of_its_two_draws() -> None:
    reps = [snap("a", 5), snap("b", 1)]
    rng = random.Random(0)
    assert {power_of_two(reps, rng).replica_id for _ in range(50)} == {"b"}


def test_power_of_two_never_picks_the_most_loaded_of_three() -> None:
    reps = [snap("a", 0), snap("b", 3), snap("c", 9)]
    rng = random.Random(1)
    picks = Counter(power_of_two(reps, rng).replica_id for _ in range(3000))
    assert picks["c"] == 0  # it loses every pair it is drawn in
    # "a" wins both pairs it is in (2/3 of draws), "b" wins only the pair with "c" (1/3).
    assert 0.6 < picks["a"] / 3000 < 0.73


def test_power_of_two_spreads_equal_load_evenly() -> None:
    reps = [snap(str(i)) for i in range(4)]
    rng = random.Random(2)
    picks = Counter(power_of_two(reps, rng).replica_id for _ in range(8000))
    assert all(1700 < n < 2300 for n in picks.values()), picks


def test_power_of_two_keeps_the_max_queue_low_under_simulated_load() -> None:
    """Balls into bins: P2C's max load stays far below random placement's."""
    rng = random.Random(3)
    n = 32
    p2c = [0] * n
    rnd = [0] * n
    for _ in range(n * 32):
        reps = [snap(str(i), p2c[i]) for i in range(n)]
        p2c[int(power_of_two(reps, rng).replica_id)] += 1
        rnd[rng.randrange(n)] += 1
    assert max(p2c) <= 32 + 3
    assert max(p2c) < max(rnd)


def test_single_replica_and_empty() -> None:
    assert power_of_two([snap("x", 7)], random.Random()).replica_id == "x"
    with pytest.raises(ValueError):
        power_of_two([], random.Random())


def test_prefix_affinity_prefers_the_owner_within_the_imbalance_threshold() -> None:
    reps = [snap("a", 0), snap("b", 2), snap("c", 1)]
    assert prefix_affinity(reps, ["b"], max_imbalance=2).replica_id == "b"
    assert prefix_affinity(reps, ["b"], max_imbalance=1) is None  # b is 2 over the floor
    # Several owners: the least loaded one.
    assert prefix_affinity(reps, ["b", "c"], max_imbalance=5).replica_id == "c"
    # Owners that are gone or unknown are ignored.
    assert prefix_affinity(reps, ["zz"], max_imbalance=5) is None


def test_prefix_affinity_skips_saturated_owners() -> None:
    reps = [snap("a", 0), snap("b", 1, cap=1)]
    assert prefix_affinity(reps, ["b"], max_imbalance=5) is None


def test_choose_replica_uses_affinity_then_falls_back_to_p2c() -> None:
    rng = random.Random(4)
    reps = [snap("a", 0), snap("b", 0), snap("c", 0)]
    assert {choose_replica(reps, owners=["c"], rng=rng).replica_id for _ in range(30)} == {"c"}
    overloaded = [snap("a", 0), snap("b", 0), snap("c", 6)]
    picks = {
        choose_replica(overloaded, owners=["c"], rng=rng, max_imbalance=2).replica_id
        for _ in range(30)
    }
    assert "c" not in picks


def test_choose_replica_ignores_unavailable_and_prefers_unsaturated() -> None:
    rng = random.Random(5)
    reps = [snap("down", 0, available=False), snap("full", 4, cap=4), snap("ok", 9)]
    assert {choose_replica(reps, rng=rng).replica_id for _ in range(30)} == {"ok"}
    # Everything saturated: still served (queued) by the less loaded.
    full = [snap("x", 5, cap=4), snap("y", 4, cap=4)]
    assert choose_replica(full, rng=rng).replica_id == "y"
    with pytest.raises(ValueError):
        choose_replica([snap("d", available=False)], rng=rng)


def test_rank_regions_orders_requested_home_then_latency() -> None:
    regions = [
        RegionSnapshot("far", 200.0, 1),
        RegionSnapshot("near", 10.0, 1),
        RegionSnapshot("home", 150.0, 1),
        RegionSnapshot("unknown", None, 1),
        RegionSnapshot("asked", 300.0, 1),
    ]
    assert rank_regions(regions) == ["near", "home", "far", "asked", "unknown"]
    assert rank_regions(regions, home="home") == ["home", "near", "far", "asked", "unknown"]
    assert rank_regions(regions, preferred="asked", home="home")[:2] == ["asked", "home"]


def test_rank_regions_skips_empty_and_demotes_saturated() -> None:
    regions = [
        RegionSnapshot("down", 1.0, 0),
        RegionSnapshot("busy", 2.0, 2, saturated=True),
        RegionSnapshot("free", 90.0, 1),
    ]
    assert rank_regions(regions, preferred="busy") == ["free", "busy"]


def test_round_robin_cycles() -> None:
    reps = [snap("a"), snap("b"), snap("c")]
    assert [round_robin(reps, i).replica_id for i in range(5)] == ["a", "b", "c", "a", "b"]


def test_the_setting_names_exactly_the_registered_policies() -> None:
    """``MODELGRID_ROUTING__POLICY`` is checked against the registry the router uses; the
    router takes the settings section itself (no second copy of its knobs)."""
    from typing import get_args

    from modelgrid.config import RoutingSettings
    from modelgrid.routing.policies import POLICIES
    from modelgrid.routing.router import Router
    from modelgrid.routing.topology import Topology

    assert set(get_args(RoutingSettings.model_fields["policy"].annotation)) == set(POLICIES)
    routing = RoutingSettings(policy="round_robin", max_attempts=2)
    assert Router(Topology(), config=routing).config is routing
