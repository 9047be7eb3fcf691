"""The simulation: a closed form (M/M/1), exact event times, and the router's residency."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from modelgrid.core.types import RoutingHints
from modelgrid.planner.profile import synthetic
from modelgrid.planner.sim import SimConfig, Stream, simulate
from modelgrid.routing.topology import Deployment, Region, Replica, Topology

M = "m"


def fleet(
    replicas: dict[str, int], latency: dict[tuple[str, str], float] | None = None
) -> Topology:
    regions = tuple(Region(r, r, "IE" if r.startswith("eu") else "US") for r in ("eu", "us"))
    deployments = tuple(
        Deployment(M, region, tuple(Replica(f"{region}/{i}", "upstream", "http://x/v1") for i in range(n)))
        for region, n in replicas.items()
    )  # fmt: skip
    return Topology(regions, deployments, "eu", latency or {})


def stream(arrivals: list[float] | np.ndarray, prompt: list[int] | np.ndarray, output: list[int] | np.ndarray, *, origin: str = "eu", hints: RoutingHints | None = None) -> Stream:  # fmt: skip
    return Stream(origin, M, "w", hints or RoutingHints(), np.asarray(arrivals, dtype=float),
                  np.asarray(prompt), np.asarray(output))  # fmt: skip


def test_mm1_mean_wait_matches_the_closed_form() -> None:
    """Poisson arrivals (5/s), exponential service (mean 100 ms: prefill of ~Exp(1000)
    tokens at 0.1 ms each, one output token): Wq = rho / (mu - lambda) = 100 ms. Four
    independent runs of 30,000 requests (the mean wait of one run wanders by a few %)."""
    profile = synthetic(M, prefill_base_ms=0, prefill_per_token_ms=0.1, decode_ms=0)
    waits, util = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        n = 30_000
        arrivals = np.cumsum(rng.exponential(1 / 5.0, n))
        prompts = np.maximum(1, np.rint(rng.exponential(1000, n))).astype(int)
        result = simulate(
            fleet({"eu": 1}), [stream(arrivals, prompts, np.ones(n, dtype=int))], {M: profile},
            SimConfig(gateway_overhead_ms=0, warmup_s=100),
        )  # fmt: skip
        waits += [s.wait_ms for s in result.served]
        util.append(result.utilisation()["eu/0"])
    assert np.mean(waits) == pytest.approx(0.5 / (10 - 5) * 1000, rel=0.04)
    assert np.mean(util) == pytest.approx(0.5, abs=0.01)


def test_a_deterministic_scenario_has_exact_times() -> None:
    """One replica in us, 80 ms from eu; gateway overhead 1 ms; prefill 10 + 1 ms a token,
    decode 5 ms a token. Two requests from eu at t = 0 and 0.1 s, 100 prompt tokens, 11
    output tokens: the first reaches the replica at 41 ms, is served 41..201 ms (110 ms
    prefill, 10 x 5 ms); the second reaches it at 141 ms and waits until 201 ms."""
    profile = synthetic(M, prefill_base_ms=10, prefill_per_token_ms=1, decode_ms=5)
    topo = fleet({"us": 1}, {("eu", "us"): 80.0})
    result = simulate(topo, [stream([0.0, 0.1], [100, 100], [11, 11])], {M: profile},
                      SimConfig(gateway_overhead_ms=1.0, probe_interval_s=None))  # fmt: skip
    first, second = sorted(result.served, key=lambda s: s.arrival_s)
    assert first.region == "us" and first.wait_ms == pytest.approx(0.0)
    assert first.ttft_ms == pytest.approx(1 + 40 + 110 + 40)
    assert first.done_s == pytest.approx(0.041 + 0.160 + 0.040)
    assert first.tpot_ms == pytest.approx(5.0)
    assert second.wait_ms == pytest.approx(201 - 141)
    assert second.ttft_ms == pytest.approx(201 + 110 + 40 - 100)


def test_the_router_keeps_residency_and_prefers_the_nearest_region() -> None:
    profile = synthetic(M, prefill_base_ms=5, prefill_per_token_ms=0.1, decode_ms=1)
    topo = fleet({"eu": 1, "us": 1}, {("eu", "us"): 80.0})
    n = 200
    t = np.linspace(0, 20, n)
    ones = np.full(n, 10)
    eu_only = RoutingHints(allowed_jurisdictions=frozenset({"IE"}))
    us_only = RoutingHints(allowed_regions=frozenset({"us"}))
    streams = [
        stream(t, ones, ones, origin="us"),  # free to go anywhere: its own region
        stream(t, ones, ones, origin="us", hints=eu_only),  # must cross to eu
        stream(t, ones, ones, origin="eu", hints=us_only),
    ]
    result = simulate(topo, streams, {M: profile}, SimConfig())
    regions = [{s.region for s in result.served if s.stream == i} for i in range(3)]
    assert regions == [{"us"}, {"eu"}, {"us"}]


def test_a_stream_residency_forbids_everywhere_is_refused_not_served() -> None:
    profile = synthetic(M, prefill_base_ms=5, prefill_per_token_ms=0.1, decode_ms=1)
    nowhere = RoutingHints(allowed_jurisdictions=frozenset({"SG"}))
    result = simulate(fleet({"eu": 1}), [stream([0.0, 1.0], [5, 5], [2, 2], hints=nowhere)],
                      {M: profile})  # fmt: skip
    assert result.served == [] and len(result.rejected) == 2


def test_the_profile_overhead_is_added_before_the_replica() -> None:
    """The deterministic scenario above with a calibrated serving path of 250 ms: both
    requests reach the replica 250 ms later (the second still waits 60 ms), every TTFT and
    finish 250 ms later."""
    profile = synthetic(M, prefill_base_ms=10, prefill_per_token_ms=1, decode_ms=5)
    profile = profile.model_copy(update={"overhead_ms": 250.0})
    topo = fleet({"us": 1}, {("eu", "us"): 80.0})
    result = simulate(topo, [stream([0.0, 0.1], [100, 100], [11, 11])], {M: profile},
                      SimConfig(gateway_overhead_ms=1.0, probe_interval_s=None))  # fmt: skip
    first, second = sorted(result.served, key=lambda s: s.arrival_s)
    assert first.ttft_ms == pytest.approx(250 + 1 + 40 + 110 + 40)
    assert first.done_s == pytest.approx(0.250 + 0.041 + 0.160 + 0.040)
    assert second.wait_ms == pytest.approx(60.0)
    assert second.ttft_ms == pytest.approx(250 + 201 + 110 + 40 - 100)


def test_spread_factors_are_drawn_from_the_profile_and_reproducible() -> None:
    """Decode spread (1.0, 1.5), prefill spread (0.5, 1.0): each request's time per output
    token is 20 or 30 ms and its prefill 50 or 100 ms (one replica, arrivals 10 s apart: no
    wait), about half each; the same seed gives the same draws, another seed others."""
    profile = synthetic(M, prefill_base_ms=0, prefill_per_token_ms=1, decode_ms=20)
    profile = profile.model_copy(update={"prefill_spread": (0.5, 1.0), "decode_spread": (1.0, 1.5)})
    n = 2000
    s = stream(np.arange(n) * 10.0, np.full(n, 100), np.full(n, 5))
    cfg = SimConfig(gateway_overhead_ms=0, probe_interval_s=None, seed=3)

    def run(config: SimConfig) -> tuple[np.ndarray, np.ndarray]:
        served = sorted(simulate(fleet({"eu": 1}), [s], {M: profile}, config).served,
                        key=lambda r: r.arrival_s)  # fmt: skip
        return np.array([r.tpot_ms for r in served]), np.array([r.ttft_ms for r in served])

    tpot, ttft = run(cfg)
    tpot, ttft = np.round(tpot, 6), np.round(ttft, 6)  # float sums of the event times
    assert set(tpot) == {20.0, 30.0} and set(ttft) == {50.0, 100.0}
    assert np.mean(tpot == 30.0) == pytest.approx(0.5, abs=0.05)
    assert np.mean(ttft == 50.0) == pytest.approx(0.5, abs=0.05)
    again = np.round(run(cfg), 6)
    assert np.array_equal(again[0], tpot) and np.array_equal(again[1], ttft)
    assert not np.array_equal(np.round(run(dataclasses.replace(cfg, seed=4))[0], 6), tpot)


def test_host_slowdown_shares_the_machine_over_time() -> None:
    """Two replicas on one machine, slowdown (1.0, 1.5); 100 ms prefill and 4 x 10 ms decode
    of work each. A starts alone at 0; B at 50 ms, and both then run at 2/3 speed: A's
    prefill ends at 50 + 50 x 1.5 = 125 ms, its work at 50 + 90 x 1.5 = 185 ms (15 ms a
    token); B has done 90 ms of work by then and, alone again, ends its prefill at 195 ms and
    its work at 235 ms (10 ms a token). C at 1 s runs alone."""
    profile = synthetic(M, prefill_base_ms=0, prefill_per_token_ms=1, decode_ms=10)
    profile = profile.model_copy(update={"host_slowdown": (1.0, 1.5)})
    cfg = SimConfig(gateway_overhead_ms=0, probe_interval_s=None)
    served = sorted(
        simulate(fleet({"eu": 2}), [stream([0.0, 0.05, 1.0], [100] * 3, [5] * 3)],
                 {M: profile}, cfg).served,
        key=lambda r: r.arrival_s,
    )  # fmt: skip
    assert served[0].replica != served[1].replica
    assert [r.ttft_ms for r in served] == pytest.approx([125.0, 145.0, 100.0])
    assert [r.tpot_ms for r in served] == pytest.approx([15.0, 10.0, 10.0])
    assert [r.done_s for r in served] == pytest.approx([0.185, 0.235, 1.140])
    assert [r.wait_ms for r in served] == pytest.approx([0.0, 0.0, 0.0])


def test_a_shared_machine_without_contention_is_the_plain_simulation() -> None:
    """host_slowdown (1.0, 1.0): the processor-sharing path gives the same times as the plain
    one (M/M/1-like load over 3 replicas, queues included)."""
    profile = synthetic(M, prefill_base_ms=20, prefill_per_token_ms=0.5, decode_ms=5)
    rng = np.random.default_rng(5)
    n = 600
    s = stream(
        np.cumsum(rng.exponential(0.05, n)), rng.integers(10, 400, n), rng.integers(1, 30, n)
    )
    base = SimConfig(gateway_overhead_ms=0, probe_interval_s=None)
    key = lambda r: r.arrival_s  # noqa: E731
    plain = sorted(simulate(fleet({"eu": 3}), [s], {M: profile}, base).served, key=key)
    one_machine = profile.model_copy(update={"host_slowdown": (1.0, 1.0, 1.0)})
    shared = sorted(simulate(fleet({"eu": 3}), [s], {M: one_machine}, base).served, key=key)
    assert [r.replica for r in shared] == [r.replica for r in plain]
    assert max(r.wait_ms for r in plain) > 10  # some requests did queue
    for a, b in zip(plain, shared, strict=True):
        assert (b.ttft_ms, b.tpot_ms, b.done_s, b.wait_ms) == pytest.approx(
            (a.ttft_ms, a.tpot_ms, a.done_s, a.wait_ms), abs=1e-6
        )


def test_replicas_are_packed_replicas_per_host_to_a_machine() -> None:
    """host_slowdown (1.0, 2.0): two replicas to a machine, in the topology's order. Four
    replicas, four requests at once (100 ms prefill, one token): eu/0 and eu/1 share one
    machine and eu/2 and eu/3 another, so each pair runs at half speed (TTFT 200 ms); a
    region of one replica has a machine of its own, never slowed (100 ms)."""
    profile = synthetic(M, prefill_base_ms=0, prefill_per_token_ms=1, decode_ms=10)
    profile = profile.model_copy(update={"host_slowdown": (1.0, 2.0)})
    assert profile.replicas_per_host == 2
    cfg = SimConfig(gateway_overhead_ms=0, probe_interval_s=None, policy="round_robin")
    served = simulate(fleet({"eu": 4}), [stream([0.0] * 4, [100] * 4, [1] * 4)], {M: profile},
                      cfg).served  # fmt: skip
    assert sorted(r.replica for r in served) == ["eu/0", "eu/1", "eu/2", "eu/3"]
    assert [r.ttft_ms for r in served] == pytest.approx([200.0] * 4)
    three = simulate(fleet({"eu": 3}), [stream([0.0] * 3, [100] * 3, [1] * 3)], {M: profile},
                     cfg).served  # fmt: skip
    assert sorted((r.replica, round(r.ttft_ms, 6)) for r in three) == [
        ("eu/0", 200.0), ("eu/1", 200.0), ("eu/2", 100.0)
    ]  # fmt: skip
