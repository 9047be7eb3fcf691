"""A profile re-read from the ledger's traffic (``planner.recalibration``,
``tenancy.timings``): the engine's speed read back from requests written at a known speed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from modelgrid.core.errors import PlanInputError
from modelgrid.core.types import RoutingHints
from modelgrid.planner import profile as profiles
from modelgrid.planner.calibration import (
    MIN_SPREAD,
    Sample,
    speed_in_run,
    speed_ratios,
    waited,
)
from modelgrid.planner.recalibration import (
    MIN_REQUESTS,
    MIN_WAITED,
    PathRead,
    contention,
    least_absolute,
    machines,
    path_overhead,
    recalibrate,
    samples,
    slices,
)
from modelgrid.planner.sim import SimConfig, Stream, simulate
from modelgrid.routing.topology import Deployment, Region, Replica, Topology
from modelgrid.tenancy.timings import Served, read_served
from tests.databases import insert_usage, migrated_sqlite, usage_row, with_sessions

MODEL = "m"
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
BASE = profiles.synthetic(MODEL, prefill_base_ms=100, prefill_per_token_ms=2, decode_ms=25)


def topology(*replicas: str) -> Topology:
    return Topology(
        (Region("r1", "", ""),),
        (Deployment(MODEL, "r1", tuple(Replica(r, "upstream", f"http://h/{r}") for r in replicas)),),
        gateway_region="r1",
    )  # fmt: skip


def served(
    at_s: float, replica: str, prompt: int, output: int, prefill_x: float, decode_x: float
) -> Served:
    """A request that took ``prefill_x`` / ``decode_x`` times ``BASE``'s fits (and ended
    a step after its last token, as llama-cpp-python's streams do)."""
    ttft = (100 + 2 * prompt) * prefill_x
    last = ttft + (output - 1) * 25 * decode_x
    return Served(T0 + timedelta(seconds=at_s), round(ttft), round(last), round(last) + 30,
                  prompt, output, "r1", replica)  # fmt: skip


def test_samples_share_one_clock_from_the_first_arrival() -> None:
    got = samples([served(0, "a", 50, 5, 1.0, 1.0), served(2.5, "b", 50, 5, 1.0, 1.0)])
    assert got == [Sample(0.0, 0.2, 0.3, 50, 5, "a"), Sample(2.5, 2.7, 2.8, 50, 5, "b")]


def test_replicas_share_machines_as_the_simulator_packs_them() -> None:
    reqs = [Sample(i, i + 0.1, i + 0.2, 10, 2, r) for i, r in enumerate("abcdx")]
    groups = machines(topology("a", "b", "c", "d"), MODEL, 2, reqs)
    assert [[s.replica for s in g] for g in groups] == [["a", "b"], ["c", "d"], ["x"]]


def test_the_speed_written_is_read_back_and_the_spreads_are_the_requests_own() -> None:
    calibrated = BASE.model_copy(update={"prefill_spread": (0.9, 1.0, 1.2),
                                         "decode_spread": (0.95, 1.0, 1.05)})  # fmt: skip
    # two engine speeds in turn: the traffic's spread, not the calibration's, is written
    reqs = [served(3 * i, "a", 40 + i, 16, 1.0 + 0.2 * (i % 2), 0.9 + 0.1 * (i % 2))
            for i in range(30)]  # fmt: skip
    done = recalibrate(calibrated, reqs, topology("a"))
    result, speed = done.profile, done.speed
    assert speed.prefill_requests == 30 and speed.decode_requests == 30
    assert speed.prefill == pytest.approx(1.10, abs=0.005)  # the median of 1.0 and 1.2
    assert speed.decode == pytest.approx(0.95, abs=0.005)
    assert len(result.prefill_spread) == len(result.decode_spread) == 30
    assert result.prefill_spread[:15] == pytest.approx((1.0,) * 15, abs=0.01)
    assert result.prefill_spread[15:] == pytest.approx((1.2,) * 15, abs=0.01)
    assert result.decode_spread[:15] == pytest.approx((0.9,) * 15, abs=0.005)
    assert result.decode_spread[15:] == pytest.approx((1.0,) * 15, abs=0.005)


def test_too_few_idle_requests_recentre_the_calibrated_prefill_spread() -> None:
    calibrated = BASE.model_copy(update={"prefill_spread": (0.9, 1.0, 1.2)})
    # fours sent together to one replica: 6 found it idle (fewer than MIN_SPREAD), 24 decodes
    reqs = [served(10 * i + d, "a", 60, 8, 1.1, 1.0) for i in range(6)
            for d in (0.0, 0.001, 0.002, 0.003)]  # fmt: skip
    done = recalibrate(calibrated, reqs, topology("a"))
    assert (done.speed.prefill_requests, done.speed.decode_requests) == (6, 24)
    assert 6 < MIN_SPREAD <= 24
    assert done.profile.prefill_spread == pytest.approx((0.99, 1.1, 1.32), abs=0.005)
    assert done.profile.decode_spread == pytest.approx((1.0,) * 24, abs=0.005)


def test_time_beside_a_busy_replica_of_the_machine_is_not_read_as_a_slower_engine() -> None:
    shared = BASE.model_copy(update={"host_slowdown": (1.0, 1.25)})
    # the two replicas of one machine always busy together: each 1.25x its fit
    reqs = [served(3 * i + d, r, 60, 16, 1.25, 1.25) for i in range(25)
            for r, d in (("a", 0.0), ("b", 0.0))]  # fmt: skip
    speed = recalibrate(shared, reqs, topology("a", "b")).speed
    assert speed.decode == pytest.approx(1.0, abs=0.01)
    # the same requests on two machines (one replica per host): the engine read 1.25x slower
    apart = recalibrate(
        BASE.model_copy(update={"host_slowdown": (1.0,)}), reqs, topology("a", "b")
    ).speed
    assert apart.decode == pytest.approx(1.25, abs=0.01)


def test_a_request_that_waited_behind_another_gives_no_prefill() -> None:
    # pairs sent together to one replica: the second of each waited
    reqs = [served(5 * i + d, "a", 60, 8, 1.0, 1.0) for i in range(12) for d in (0.0, 0.001)]
    speed = recalibrate(BASE, reqs, topology("a")).speed
    assert speed.prefill_requests == 12 and speed.decode_requests == 24


def test_waited_reads_the_gap_after_the_one_ahead_over_the_fitted_prefill() -> None:
    fit_ms = 100 + 2 * 50  # BASE's prefill of 50 tokens
    reqs = [
        Sample(0.0, 0.25, 0.70, 50, 16, "a"),  # idle
        Sample(0.10, 0.70 + 0.24, 1.30, 50, 16, "a"),  # behind the first: 240 ms of prefill
        Sample(0.20, 0.45, 0.80, 50, 16, "b"),  # another replica, idle
        Sample(2.00, 2.30, 2.60, 50, 16, "a"),  # sent after the others ended
        Sample(2.05, 2.60 + 0.18, 2.90, 50, 1, "a"),  # one token: first = last, still behind
        Sample(2.10, 2.50, 2.55, 50, 16, ""),  # no replica named: says nothing
    ]
    assert waited(BASE, reqs) == pytest.approx([240 / fit_ms, 180 / fit_ms], rel=1e-3)


def behind_ledger(path_ms: float, prefill_x: float, pairs: int) -> list[Served]:
    """``pairs`` rounds of two requests to one replica: the first idle (TTFT = ``path_ms``
    + ``prefill_x`` x ``BASE``'s prefill), the second sent 10 ms later and served after the
    first's last token (its prefill alone: ``prefill_x`` x the fit); decode at the fit."""
    out = []
    for i in range(pairs):
        at_s, prompt = 10.0 * i, 40 + i
        ttft = path_ms + prefill_x * (100 + 2 * prompt)
        last = ttft + 15 * 25
        out.append(Served(T0 + timedelta(seconds=at_s), round(ttft), round(last),
                          round(last) + 30, prompt, 16, "r1", "a"))  # fmt: skip
        first = last - 10 + prefill_x * (100 + 2 * prompt)
        out.append(Served(T0 + timedelta(seconds=at_s + 0.01), round(first),
                          round(first + 15 * 25), round(first + 15 * 25) + 30, prompt, 16,
                          "r1", "a"))  # fmt: skip
    return out


def test_the_serving_paths_overhead_is_reread_from_requests_that_waited() -> None:
    # calibrated 150 ms of path at prefill 1.0; the traffic: 50 ms of path, prefill 1.2
    calibrated = BASE.model_copy(update={"overhead_ms": 150.0})
    done = recalibrate(calibrated, behind_ledger(50, 1.2, MIN_WAITED), topology("a"))
    assert done.path is not None and done.path.waited == MIN_WAITED
    assert done.profile.overhead_ms == pytest.approx(50, abs=1.5)
    assert done.speed.prefill == pytest.approx(1.2, abs=0.01)


def test_a_recalibration_starts_from_the_calibration_not_from_the_last_one() -> None:
    calibrated = BASE.model_copy(update={"overhead_ms": 150.0, "calibrated_overhead_ms": 150.0})
    first = recalibrate(calibrated, behind_ledger(50, 1.2, MIN_WAITED), topology("a")).profile
    assert (first.overhead_ms, first.calibrated_overhead_ms) == (pytest.approx(50, abs=1.5), 150.0)
    # a window with too few waited: the calibration's 150 ms again, not the 50 read above
    idle = [served(200 + 3 * i, "a", 40, 16, 1.0, 1.0) for i in range(MIN_REQUESTS)]
    again = recalibrate(first, idle, topology("a"))
    assert again.profile.overhead_ms == 150.0
    assert again.speed == recalibrate(calibrated, idle, topology("a")).speed


def test_too_few_waited_keep_the_calibrated_overhead() -> None:
    calibrated = BASE.model_copy(update={"overhead_ms": 150.0})
    reqs = behind_ledger(50, 1.2, MIN_WAITED - 1) + [
        served(200 + 3 * i, "a", 40, 16, 1.0, 1.0) for i in range(MIN_REQUESTS)
    ]
    done = recalibrate(calibrated, reqs, topology("a"))
    assert done.path is not None and (done.path.waited, done.path.residual_ms) == (
        MIN_WAITED - 1,
        None,
    )
    assert done.profile.overhead_ms == 150.0


def test_a_batching_engine_keeps_its_overhead() -> None:
    batching = BASE.model_copy(update={"overhead_ms": 150.0, "slots": 8})
    reqs = samples(behind_ledger(50, 1.2, MIN_WAITED))
    assert path_overhead(batching, reqs) == PathRead(batching, 0)


def test_an_overhead_below_zero_reads_as_zero() -> None:
    # the queued prefill slower than the idle requests' whole TTFT: no path left
    calibrated = BASE.model_copy(update={"overhead_ms": 150.0})
    reqs = samples(behind_ledger(0, 1.0, MIN_WAITED))
    later = [0.05 * (i % 2) for i in range(len(reqs))]  # each second of a pair 50 ms later
    slow = [
        Sample(s.sent_s, s.first_s + d, s.last_s + d, s.prompt_tokens, s.output_tokens, s.replica)
        for s, d in zip(reqs, later, strict=True)
    ]
    read = path_overhead(calibrated, slow)
    assert (read.waited, read.profile.overhead_ms) == (MIN_WAITED, 0.0)
    assert read.residual_ms == pytest.approx(-50, abs=1)


def shared_machine(
    slowdown: tuple[float, ...], requests: int, rate_rps: float, speed: float = 1.0
) -> list[Sample]:
    """Poisson arrivals to three replicas of one machine served by the product's simulator
    with ``slowdown`` as the machine's sharing and the engine ``speed`` x ``BASE``'s fits;
    each as the client saw it."""
    truth = BASE.model_copy(update={"replicas_per_host": 3, "host_slowdown": slowdown,
                                    "prefill_spread": (speed,), "decode_spread": (speed,)})  # fmt: skip
    rng = np.random.default_rng(7)
    stream = Stream(
        origin="r1",
        model=MODEL,
        workspace="w",
        hints=RoutingHints(),
        arrivals_s=np.cumsum(rng.exponential(1 / rate_rps, requests)),
        prompt_tokens=rng.integers(20, 120, requests),
        output_tokens=rng.integers(8, 40, requests),
    )
    config = SimConfig(gateway_overhead_ms=0.0, probe_interval_s=None, policy="p2c")
    res = simulate(topology("a", "b", "c"), [stream], {MODEL: truth}, config)
    out = []
    for x, prompt in zip(
        sorted(res.served, key=lambda x: x.arrival_s), stream.prompt_tokens, strict=True
    ):
        first = x.arrival_s + x.ttft_ms / 1000
        last = first + x.tpot_ms * (x.output_tokens - 1) / 1000
        out.append(Sample(x.arrival_s, first, last, int(prompt), x.output_tokens, x.replica))
    return out


def test_the_machines_sharing_is_read_back_from_the_ledger() -> None:
    # served at 1 / 1.2 / 1.5 with 1, 2, 3 replicas busy, the engine 5 % slow; the profile
    # says 1 / 1.05 / 1.1 (the case of validation run 22: a table that is off reads as a
    # different engine speed at each mix of busy replicas)
    reqs = shared_machine((1.0, 1.2, 1.5), 400, 1.0, speed=1.05)
    calibrated = BASE.model_copy(update={"replicas_per_host": 3, "host_slowdown": (1.0, 1.05, 1.1)})  # fmt: skip
    shared = contention(calibrated, reqs)
    assert shared.read == (True, True, True)
    assert min(shared.at_busy) >= 10
    assert shared.slowdown == pytest.approx((1.0, 1.2, 1.5), abs=0.01)
    done = recalibrate(calibrated, [served_as(s) for s in reqs], topology("a", "b", "c"))
    assert done.profile.host_slowdown == pytest.approx(shared.slowdown, abs=0.002)  # ms rounded
    assert done.speed.decode == pytest.approx(1.05, abs=0.01)
    # read with the calibrated table, the same requests say the engine is ~15 % slower
    wrong = decode_speed(calibrated, reqs)
    assert wrong > 1.12


def decode_speed(profile: profiles.EngineProfile, reqs: list[Sample]) -> float:
    decode = speed_in_run(profile, reqs).decode
    assert decode is not None
    return decode


def served_as(s: Sample) -> Served:
    """``s`` as the ledger holds it (ms rounded)."""
    ttft, last = round(s.ttft_ms), round((s.last_s - s.sent_s) * 1000)
    return Served(T0 + timedelta(seconds=s.sent_s), ttft, last, last + 30, max(1, s.prompt_tokens),
                  s.output_tokens, "r1", s.replica)  # fmt: skip


def test_too_little_time_at_a_busy_count_keeps_its_calibrated_slowdown() -> None:
    # light load: three busy at once too rarely to read
    reqs = shared_machine((1.0, 1.2, 1.5), 150, 0.4)
    calibrated = BASE.model_copy(update={"replicas_per_host": 3, "host_slowdown": (1.0, 1.05, 1.6)})  # fmt: skip
    shared = contention(calibrated, reqs)
    assert shared.at_busy[2] < 10 <= shared.at_busy[1]
    assert shared.read == (True, True, False)
    assert shared.slowdown[1] == pytest.approx(1.2, abs=0.02)
    assert shared.slowdown[2] == 1.6


def test_a_machine_per_replica_has_no_sharing_to_read() -> None:
    reqs = shared_machine((1.0, 1.2, 1.5), 100, 10.0)
    one = BASE.model_copy(update={"host_slowdown": (1.0,)})
    assert contention(one, reqs).slowdown == (1.0,)
    assert contention(one, reqs).read == (False,)
    assert contention(BASE, reqs).slowdown == ()


def test_least_absolute_deviations_ignore_an_outlier() -> None:
    x = np.arange(1.0, 21.0)[:, None]
    y = 2.0 * x[:, 0]
    y[5] = 100.0  # a request a neighbour slowed 8x
    assert least_absolute(x, y)[0] == pytest.approx(2.0, abs=1e-4)
    assert np.linalg.lstsq(x, y, rcond=None)[0][0] > 2.1  # least squares is pulled


def test_the_speed_is_read_by_five_minute_slice_too() -> None:
    # 0.90 of the fit for five minutes, then 1.10; 5 requests after in a slice too few to read
    reqs = [served(10 * i, "a", 60, 16, 1.0, 0.90) for i in range(30)]
    reqs += [served(300 + 10 * i, "a", 60, 16, 1.2, 1.10) for i in range(30)]
    reqs += [served(600 + 10 * i, "a", 60, 16, 1.0, 2.0) for i in range(5)]
    done = recalibrate(BASE, reqs, topology("a"))
    assert [(x.decode_requests, x.prefill_requests) for x in done.slices] == [(30, 30), (30, 30)]
    assert [x.decode for x in done.slices] == [pytest.approx(0.90, abs=0.005), pytest.approx(1.10, abs=0.005)]  # fmt: skip
    assert [x.prefill for x in done.slices] == [pytest.approx(1.0, abs=0.005), pytest.approx(1.2, abs=0.005)]  # fmt: skip
    assert done.speed.decode_requests == 65
    by_2_min = slices(
        [speed_ratios(BASE, samples(reqs))], slice_s=120.0
    )  # the last slice's 5: too few
    assert [x.decode_requests for x in by_2_min] == [12] * 5
    # 12 decodes but 6 prefills (pairs sent together to one replica: the second waited)
    pairs = [served(20 * i + d, "a", 60, 8, 1.0, 1.0) for i in range(6) for d in (0.0, 0.001)]
    (slice_,) = slices([speed_ratios(BASE, samples(pairs))])
    assert (slice_.decode_requests, slice_.prefill_requests, slice_.prefill) == (12, 6, None)


def test_too_few_requests_are_named() -> None:
    reqs = [served(3 * i, "a", 40, 16, 1.0, 1.0) for i in range(MIN_REQUESTS - 1)]
    with pytest.raises(PlanInputError, match=r"19 served requests of m in the window, 19 of two tokens or more .* it needs 20 of two tokens"):  # fmt: skip
        recalibrate(BASE, reqs, topology("a"))


def test_the_ledger_gives_the_window_arrivals_of_served_online_requests(tmp_path: Path) -> None:
    def row(
        rid: str, arrived_s: float, total_ms: int = 1000, **fields: object
    ) -> dict[str, object]:
        fields = {
            "model": MODEL,
            "region": "r1",
            "replica": "a",
            "ttft_ms": 200,
            "last_token_ms": 900,
            "prompt_tokens": 50,
            "cached_tokens": 10,
            "completion_tokens": 8,
            **fields,
        }
        done = T0 + timedelta(seconds=arrived_s, milliseconds=total_ms)
        return usage_row(rid, done, total_ms=total_ms, **fields)  # fmt: skip

    rows = [
        row("in", 10), row("in-late", 50, total_ms=30000), row("before", -2, total_ms=5000),
        row("after", 60), row("batch", 20, batch_id="b1"), row("failed", 20, status=500),
        row("embed", 20, endpoint="embeddings"), row("other-model", 20, model="x"),
        row("no-token", 20, ttft_ms=None, completion_tokens=0), row("eu", 30, region="r2"),
        row("before-last-token-was-recorded", 20, last_token_ms=None),
    ]  # fmt: skip
    url = migrated_sqlite(tmp_path / "mg.db")

    async def go(sessions: object) -> tuple[list[Served], list[Served]]:
        await insert_usage(sessions, rows)
        until = T0 + timedelta(seconds=60)
        return (await read_served(sessions, MODEL, T0, until),
                await read_served(sessions, MODEL, T0, until, region="r1"))  # fmt: skip

    every, r1 = with_sessions(url, go)
    assert [(s.arrived_at, s.ttft_ms, s.last_token_ms, s.total_ms, s.prompt_tokens,
             s.output_tokens, s.replica) for s in every[:1]] == [
        (T0 + timedelta(seconds=10), 200, 900, 1000, 40, 8, "a")]  # fmt: skip
    assert [s.region for s in every] == ["r1", "r2", "r1"]
    assert [s.total_ms for s in r1] == [1000, 30000]
