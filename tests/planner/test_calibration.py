"""Calibration: the overhead, spreads and host slowdown from requests (scripted probes with
exact times), the engine's speed read from a run's own requests, and ``modelgrid plan
calibrate`` through a real gateway in front of two scripted replicas that share one
machine (real HTTP; the replicas serve 1.5x slower while both are busy)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelgrid.cli import app
from modelgrid.planner import calibration as cal
from modelgrid.planner import profile as profiles
from modelgrid.planner.calibration import CalibrationRun, Sample, Speed
from modelgrid.planner.errors import PlanInputError
from modelgrid.routing.topology import Deployment, Region, Replica, Topology, dumps
from tests.conftest import make_settings
from tests.scripted_upstream import (
    DONE,
    AppThread,
    Exchange,
    Receive,
    ScriptedUpstream,
    Send,
    body,
    chunk,
    event,
    start_sse,
    usage_chunk,
)
from tests.support import ThreadServer, create_key

# prefill 100 + 2 n ms, decode 20 ms a token: 50 tokens, 5 out -> 200 + 4 x 20 = 280 ms
PROFILE = profiles.synthetic("m", prefill_base_ms=100, prefill_per_token_ms=2, decode_ms=20)


def sample(sent: float, ttft_ms: float, tpot_ms: float, *, n: int = 50, out: int = 5,
           replica: str = "r0") -> Sample:  # fmt: skip
    first = sent + ttft_ms / 1000
    return Sample(sent, first, first + (out - 1) * tpot_ms / 1000, n, out, replica)


def test_apply_measures_overhead_spreads_and_host_slowdown() -> None:
    """Idle: TTFT = 30 + 200 x f, decode 20 x f ms (f's median 1), overhead 30 ms: service
    ratio f. The engine is 1.2x slow for the first 3 of 8 idle requests (t = 0-20 s) and
    all 5 rounds of two at once fall in that stretch (1.5 x 1.2 = 1.8x the fit); 5 rounds
    of three at once (t = 55-68 s) take 2x. Each round is compared with its 4 nearest idle
    requests: host slowdown (1, 1.5, 2) — not 1.8, which rounds compared with all idle
    requests read."""
    f = [1.2, 1.2, 1.2, 1.0, 1.0, 1.0, 1.0, 1.0]
    idle = tuple(sample(10.0 * i, 30 + 200 * x, 20 * x) for i, x in enumerate(f))
    two = tuple(
        (sample(t, 30 + 360, 36, replica="a"), sample(t + 0.05, 30 + 360, 36, replica="b"))
        for t in (5.0, 8.0, 12.0, 15.0, 18.0)
    )  # fmt: skip
    three = tuple(
        tuple(sample(t, 30 + 400, 40, replica=r) for r in "abc") for t in (55, 58, 62, 65, 68)
    )
    run = CalibrationRun(idle, {2: two, 3: three}, {2: 5, 3: 5})
    p = cal.apply(PROFILE, run, calibrated_at="2026-12-06T14:00:00+00:00")
    assert p.overhead_ms == pytest.approx(30.0)
    assert p.prefill_spread == pytest.approx(sorted(f), abs=1e-4)
    assert p.decode_spread == pytest.approx(sorted(f), abs=1e-4)
    assert p.host_slowdown == pytest.approx((1.0, 1.5, 2.0), abs=1e-4)
    assert (p.replicas_per_host, p.calibrated_at) == (3, "2026-12-06T14:00:00+00:00")
    # kept apart for plan recalibrate, which starts from them each time
    assert (p.calibrated_overhead_ms, p.calibrated_host_slowdown) == (
        p.overhead_ms,
        p.host_slowdown,
    )
    alone = cal.apply(PROFILE.model_copy(update={"host_slowdown": (1.0, 9.0)}),
                      CalibrationRun(idle, {}, {}))  # fmt: skip
    assert (alone.host_slowdown, alone.replicas_per_host) == ((), 1)


def test_a_slowdown_within_the_noise_is_none() -> None:
    """Rounds of two at 1.1, 1.1, 1.1, 1.1 and 0.9x their neighbours (4 of 5 slower, the
    faster one the farthest off: T+ = 4 x 2.5 = 10 of 15, p = 12/32 by the signed-rank test)
    are no measured slowdown: s_2 = 1 (their median, 1.1, is not taken); 5 rounds of three
    all at 1.5x (p = 1/32) are; 2 rounds, even both slower, never are (p = 1/4). A median
    under 1 (0.95) reads as 1: more busy replicas never speed one up."""
    idle = tuple(sample(10.0 * i, 230, 20) for i in range(10))

    def rounds(k: int, factors: list[float]) -> tuple[tuple[Sample, ...], ...]:
        return tuple(
            tuple(sample(10.0 * i + 1, 30 + 200 * x, 20 * x, replica=str(j)) for j in range(k))
            for i, x in enumerate(factors)
        )

    run = CalibrationRun(idle, {2: rounds(2, [1.1, 1.1, 0.9, 1.1, 1.1]),
                                3: rounds(3, [1.5] * 5)}, {2: 5, 3: 5})  # fmt: skip
    assert cal.host_slowdown(PROFILE.model_copy(update={"overhead_ms": 30.0}), run) == (
        pytest.approx((1.0, 1.0, 1.5), abs=1e-4)
    )  # fmt: skip
    for factors in ([1.5, 1.5], [0.95] * 5):
        run = CalibrationRun(idle, {2: rounds(2, factors)}, {2: len(factors)})
        assert cal.host_slowdown(PROFILE.model_copy(update={"overhead_ms": 30.0}), run) == (
            1.0, 1.0
        )  # fmt: skip


def test_a_consistent_small_slowdown_shows_in_ten_rounds() -> None:
    """Ten rounds of two, 8 at 1.03-1.05x their neighbours and 2 at 0.99x (validation run
    16's kind: a few % in a ±5 % wander): the 2 faster ones have the least ranks, T+ = 52 of
    55, p = 4/1024 (ties counted exactly) — kept, s_2 = their median (1.035); the sign test
    of before (8 of 10: p = 56/1024) kept nothing. The same rounds with the 2 faster ones
    at 0.90x (the farthest off: T+ = 36, p = 0.21) are not."""
    idle = tuple(sample(10.0 * i, 230, 20) for i in range(20))

    def rounds(factors: list[float]) -> tuple[tuple[Sample, ...], ...]:
        return tuple(
            tuple(sample(20.0 * i + 1, 30 + 200 * x, 20 * x, replica=str(j)) for j in range(2))
            for i, x in enumerate(factors)
        )

    profile = PROFILE.model_copy(update={"overhead_ms": 30.0})
    small = [1.03, 1.04, 0.99, 1.05, 1.04, 1.03, 1.05, 0.99, 1.04, 1.03]
    run = CalibrationRun(idle, {2: rounds(small)}, {2: 10})
    assert cal.host_slowdown(profile, run) == pytest.approx((1.0, 1.035), abs=1e-3)
    wide = [0.90 if x == 0.99 else x for x in small]
    run = CalibrationRun(idle, {2: rounds(wide)}, {2: 10})
    assert cal.host_slowdown(profile, run) == (1.0, 1.0)


def test_the_first_requests_of_a_queued_round_count_as_a_round_at_once() -> None:
    """A round of 3 on 2 replicas runs its first 2 side by side (the third queued): they
    count toward the slowdown at 2 busy beside the rounds of 2, when the router put them on
    2 distinct replicas. 3 rounds of 2 at 1.3x and 3 queued rounds whose first two take
    1.3x (and one whose first two shared a replica, at 3x: not counted) give 6 ratios of
    1.3 — with 3 alone no test at 0.05 could keep it (p = 1/8), with 6 it does (1/64)."""
    idle = tuple(sample(10.0 * i, 230, 20) for i in range(10))

    def at(t: float, x: float, replicas: str) -> tuple[Sample, ...]:
        return tuple(sample(t + 0.05 * j, 30 + 200 * x, 20 * x, replica=r)
                     for j, r in enumerate(replicas))  # fmt: skip

    together = {2: tuple(at(10.0 * i + 1, 1.3, "ab") for i in range(3))}
    crowded = (*(at(10.0 * i + 5, 1.3, "aba") for i in range(3)), at(75.0, 3.0, "aab"))
    run = CalibrationRun(idle, together, {2: 3}, crowded)
    profile = PROFILE.model_copy(update={"overhead_ms": 30.0})
    assert len(cal.rounds_at_once(run, 2)) == 6 and cal.rounds_at_once(run, 3) == []
    assert cal.slowdown_ratios(profile, run, 2) == pytest.approx([1.3] * 6, abs=1e-3)
    assert cal.host_slowdown(profile, run) == pytest.approx((1.0, 1.3), abs=1e-3)
    alone = CalibrationRun(idle, together, {2: 3})
    assert cal.host_slowdown(profile, alone) == (1.0, 1.0)


def test_signed_rank_p_is_the_exact_tail() -> None:
    """Against every sign pattern counted by brute force (ties included), and table values:
    n = 5 all positive 1/32; n = 10 with ranks 1 and 2 negative (T- = 3) 5/1024."""

    def brute(d: list[float]) -> float:
        d = [x for x in d if x]
        a = [abs(x) for x in d]
        ranks = [1 + sum(b < v for b in a) + (sum(b == v for b in a) - 1) / 2 for v in a]
        t = sum(r for r, x in zip(ranks, d, strict=True) if x > 0)
        hits = sum(
            sum(r for r, bit in zip(ranks, range(len(d)), strict=True) if mask >> bit & 1) >= t
            for mask in range(2 ** len(d))
        )
        return hits / 2 ** len(d)

    rng = random.Random(3)
    for _ in range(40):
        d = [round(rng.uniform(-1, 1.5), 1) for _ in range(rng.randint(1, 9))]
        assert cal.signed_rank_p(d) == pytest.approx(brute(d), abs=1e-12)
    assert cal.signed_rank_p([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(1 / 32)
    assert cal.signed_rank_p([-0.01, -0.02, *[0.1 * i for i in range(1, 9)]]) == (
        pytest.approx(5 / 1024)
    )  # fmt: skip
    assert cal.signed_rank_p([0.0, 0.0]) == 1.0 and cal.signed_rank_p([]) == 1.0


class ScriptedProbe:
    """A probe whose answers are scripted: 50 uncached tokens, 5 out, TTFT 230 ms, TPOT 20 ms;
    the replicas named in turn from ``replicas``."""

    def __init__(self, replicas: list[str]) -> None:
        self.replicas, self.texts = iter(replicas), []  # type: ignore[var-annotated]

    async def __call__(self, text: str) -> Sample:
        self.texts.append(text)
        return sample(0.0, 230, 20, replica=next(self.replicas))


def test_measure_counts_only_rounds_on_distinct_replicas() -> None:
    """Warm-up, then 3 idle requests with the rounds spread among them, kind by kind in turn
    (``interleave(3, 4)``: before idle requests 1, 1, 2, 2): idle, a crowded round of 3,
    rounds of 2 until one lands on 2 distinct replicas, idle, crowded, a round of 2, idle."""
    assert cal.interleave(3, 4) == [1, 1, 2, 2]
    assert cal.interleave(10, 5) == [2, 3, 5, 7, 8] and cal.interleave(1, 2) == [0, 1]
    script = ["w", "i0", "c", "d", "c", "a", "a", "b", "a", "i1", "c", "d", "c", "a", "b", "i2"]
    probe = ScriptedProbe(script)
    run = asyncio.run(cal.measure(probe, requests=3, replicas_per_host=2, rounds=2, seed=1))
    assert len(probe.texts) == len(script)
    assert len(set(probe.texts)) == len(probe.texts)  # every message differs
    assert [s.replica for s in run.idle] == ["i0", "i1", "i2"] and run.tried == {2: 3}
    assert [[s.replica for s in rnd] for rnd in run.crowded] == [["c", "d", "c"]] * 2
    assert [[s.replica for s in rnd] for rnd in run.together[2]] == [["b", "a"], ["a", "b"]]
    assert probe.texts[0].startswith("Note 0: ") and len(probe.texts[0].split()) == 2 + 40 + 11


def test_measure_says_when_the_gateway_never_spreads_the_requests() -> None:
    probe = ScriptedProbe(["a"] * 100)
    with pytest.raises(PlanInputError, match=r"in 6 rounds of 2 requests at once .* never"):
        asyncio.run(cal.measure(probe, requests=1, replicas_per_host=2, rounds=2))
    # said as the 6 tries are spent (warm-up, a crowded round of 3, 6 rounds of 2), not
    # after the remaining rounds and idle requests
    assert len(probe.texts) == 1 + 3 + 6 * 2
    with pytest.raises(PlanInputError, match="must be >= 1"):
        asyncio.run(cal.measure(probe, requests=0))


def test_queued_requests_separate_the_prefill_from_the_serving_path() -> None:
    """The engine's prefill is 10 % faster than profiled (180 ms for the fit's 200) and the
    serving path takes 50 ms: idle TTFTs of 230 ms. In a round of three at once B waited
    behind A on replica r0 and its first token came 180 ms after A's last: prefill speed
    0.9, so the overhead is 50 ms and the prefill spread 0.9. Without a queued request the
    same TTFTs read as 30 ms of overhead on an unchanged engine."""
    idle = tuple(sample(10.0 * i, 230, 20) for i in range(5))
    a = sample(100.0, 280, 20)  # last token at 100.36
    b = sample(100.0, 360 + 180, 20)  # first at 100.54: 180 ms after A's last
    c = sample(100.0, 280, 20, replica="r1")  # done by then
    assert cal.waited(PROFILE, [a, b, c]) == [pytest.approx(0.9, abs=0.01)]  # B's 180 ms
    assert cal.waited(PROFILE, [a, sample(101.0, 230, 20)]) == []  # sent after A's end
    assert cal.prefill_speed(PROFILE, [[a, b, c]]) == (pytest.approx(0.9, abs=0.01), 1)
    assert cal.prefill_speed(PROFILE, [[a, c]]) == (None, 0)
    p = cal.apply(PROFILE, CalibrationRun(idle, {}, {}, ((a, b, c),)))
    assert p.overhead_ms == pytest.approx(50.0, abs=2)
    assert p.prefill_spread == pytest.approx([0.9] * 5, abs=0.01)
    confounded = cal.apply(PROFILE, CalibrationRun(idle, {}, {}))
    assert (confounded.overhead_ms, confounded.prefill_spread) == (
        pytest.approx(30.0), pytest.approx([1.0] * 5)
    )  # fmt: skip


def test_a_queued_prefill_beside_the_machine_s_other_replicas_is_counted_as_work() -> None:
    """Replicas sharing a machine, 2x slower while two are busy: C on r1 runs for the first
    100 ms of B's 180 ms prefill, so B did 100 / 2 + 80 = 130 ms of work (0.65 of the fit);
    a machine per replica (no slowdown) counts the 180 ms as they are."""
    a, b = sample(100.0, 280, 20), sample(100.0, 360 + 180, 20)
    c = sample(100.0, 380, 20, replica="r1")  # last token at 100.46
    assert cal.prefill_speed(PROFILE, [[a, b, c]], (1.0, 2.0)) == (
        pytest.approx(0.65, abs=0.01), 1
    )  # fmt: skip
    assert cal.prefill_speed(PROFILE, [[a, b, c]]) == (pytest.approx(0.9, abs=0.01), 1)


def test_speed_in_run_reads_the_engine_from_the_run() -> None:
    """One replica: A alone (TTFT 30 + 220 = 1.1 x prefill, TPOT 22 ms = 1.1 x); B sent while
    A runs (waits: its TTFT says nothing of prefill), decode 18 ms = 0.9 x; C alone, prefill
    1.0 x, decode 1.0 x. Prefill median of A and C 1.05; decode median of all three 1.0."""
    p = PROFILE.model_copy(update={"overhead_ms": 30.0})
    a = sample(0.0, 30 + 220, 22)
    b = sample(0.1, 500, 18)
    c = sample(5.0, 30 + 200, 20)
    got = cal.speed_in_run(p, [a, b, c])
    assert (got.prefill, got.decode) == pytest.approx((1.05, 1.0))
    assert (got.prefill_requests, got.decode_requests) == (2, 3)
    assert cal.speed_in_run(p, []) == Speed(None, None, 0, 0)


def test_speed_in_run_takes_the_host_slowdown_off() -> None:
    """Two replicas on one machine that serve 2x slower while both are busy: A (r0) and B
    (r1) sent together, each TTFT 30 + 400 ms and TPOT 40 ms, i.e. the fit's work (prefill
    200 ms of 50 tokens, 20 ms a token) at half speed: both read 1.0 x, not 2.0 x. C alone
    later at the fit's own times: 1.0 x. Without
    a slowdown (a machine per replica) A and B read 2.0 x and the medians follow them."""
    shared = PROFILE.model_copy(update={"overhead_ms": 30.0, "host_slowdown": (1.0, 2.0)})
    a = sample(0.0, 30 + 400, 40)
    b = sample(0.0, 30 + 400, 40, replica="r1")
    c = sample(5.0, 30 + 200, 20)
    got = cal.speed_in_run(shared, [a, b, c])
    assert (got.prefill, got.decode) == pytest.approx((1.0, 1.0), abs=0.01)
    assert (got.prefill_requests, got.decode_requests) == (3, 3)
    alone = shared.model_copy(update={"host_slowdown": ()})
    got = cal.speed_in_run(alone, [a, b, c])
    assert (got.prefill, got.decode) == pytest.approx((2.0, 2.0), abs=0.01)


def test_at_speed_recentres_the_spreads() -> None:
    p = PROFILE.model_copy(update={"prefill_spread": (0.9, 1.0, 1.2), "decode_spread": ()})
    q = cal.at_speed(p, Speed(1.1, 0.95, 3, 3))
    assert q.prefill_spread == pytest.approx((0.99, 1.1, 1.32))
    assert q.decode_spread == (0.95,)
    assert cal.at_speed(p, Speed(None, None, 0, 0)) == p


def test_a_spread_of_many_requests_keeps_their_quantiles() -> None:
    assert cal.spread_of([1.2, 0.0, 0.91234, -1.0]) == (0.9123, 1.2)  # positive, sorted
    many = cal.spread_of([float(x) for x in range(1, 1001)], points=4)  # 1..1000
    assert many == pytest.approx((125.875, 375.625, 625.375, 875.125))


def test_in_traffic_reads_a_spread_where_enough_requests_give_one() -> None:
    p = PROFILE.model_copy(update={"prefill_spread": (0.9, 1.0, 1.2), "decode_spread": (1.0,)})
    decode = [(float(i), 0.8 + 0.01 * i) for i in range(cal.MIN_SPREAD)]
    prefill = [(0.0, 1.1)] * (cal.MIN_SPREAD - 1)
    q = cal.in_traffic(p, [(prefill, decode[:4]), ([], decode[4:])])  # two machines
    assert q.decode_spread == pytest.approx(tuple(0.8 + 0.01 * i for i in range(10)))
    assert q.prefill_spread == pytest.approx((0.99, 1.1, 1.32))  # too few: re-centred
    assert cal.in_traffic(p, [([], [])]) == p


# --- through a real gateway ------------------------------------------------------------------

MODEL = "shared-model"
PREFILL_BASE_MS, PER_TOKEN_MS, DECODE_MS, SLOWDOWN = 120.0, 2.0, 30.0, (1.0, 1.5)


class Machine:
    """Two replicas' shared cores: work advances at 1 / SLOWDOWN[k - 1] while k requests
    are in service (processor sharing, in 2 ms ticks). Each replica serves one request at
    a time, the others wait (as the llama.cpp engine does)."""

    def __init__(self) -> None:
        self.active = 0
        self.lock = threading.Lock()

    async def work(self, ms: float) -> None:
        done, last = 0.0, time.perf_counter()
        while done < ms:
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            k = max(1, self.active)
            done += (now - last) * 1000 / SLOWDOWN[min(k, len(SLOWDOWN)) - 1]
            last = now

    def replica(self) -> ScriptedUpstream:
        one_at_a_time = asyncio.Lock()  # used on the replica's own event loop only

        async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
            n = len(ex.body["messages"][-1]["content"].split())
            out = int(ex.body["max_tokens"])
            await start_sse(send)
            await body(send, event(chunk("", role="assistant", model=MODEL)))
            async with one_at_a_time:
                with self.lock:
                    self.active += 1
                try:
                    await self.work(PREFILL_BASE_MS + PER_TOKEN_MS * n)
                    for i in range(out):
                        if i:
                            await self.work(DECODE_MS)
                        await body(send, event(chunk(f" {i}", model=MODEL)))
                finally:
                    with self.lock:
                        self.active -= 1
            await body(send, event(chunk(finish="length", model=MODEL)))
            await body(send, event(usage_chunk(n, out)))
            await body(send, DONE, more=False)

        up = ScriptedUpstream(handler)
        up.model_entries = [{"id": MODEL, "object": "model"}]
        return up


@pytest.fixture
def shared_fleet(tmp_path: Path) -> Iterator[tuple[ThreadServer, str, Path]]:
    """A gateway routing MODEL to two replicas on one ``Machine``; its key; a profile file
    whose fits are the replicas' own times."""
    from modelgrid.engines.fake import FakeEngine

    machine = Machine()
    ups = [AppThread(machine.replica()).start() for _ in range(2)]
    t = Topology(
        (Region("local", "Local"),),
        (Deployment(MODEL, "local", tuple(
            Replica(f"r{i}", "upstream", f"{u.base_url}/v1") for i, u in enumerate(ups)
        )),),
        gateway_region="local",
    )  # fmt: skip
    (tmp_path / "topology.toml").write_text(dumps(t), encoding="utf-8")
    settings = make_settings(tmp_path, topology_file=tmp_path / "topology.toml")
    server = ThreadServer(settings, lambda _s: [FakeEngine()]).start()
    key = create_key(settings.database_url, name="calibrate").plaintext
    path = tmp_path / "profile.json"
    profiles.save(
        profiles.synthetic(MODEL, prefill_base_ms=PREFILL_BASE_MS,
                           prefill_per_token_ms=PER_TOKEN_MS, decode_ms=DECODE_MS),
        path,
    )  # fmt: skip
    try:
        yield server, key, path
    finally:
        server.stop()
        for u in ups:
            u.stop()


def test_plan_calibrate_measures_the_shared_machine_through_the_gateway(
    shared_fleet: tuple[ThreadServer, str, Path], tmp_path: Path
) -> None:
    """The replicas take exactly the profile's times alone and 1.5x as long while both are
    busy: the command measures the gateway's overhead (ms, never negative), spreads
    centred on 1 and a host slowdown of 1.5 at 2 busy, and writes them into the profile,
    the fits kept. Each of the 5 rounds of 3 at once queues one request behind another,
    whose prefill, counted as work beside the other replica's, is the fit's."""
    server, key, path = shared_fleet
    env = {"MODELGRID_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    done = CliRunner().invoke(
        app,
        ["plan", "calibrate", "--key", key, "--url", f"{server.base_url}/v1", "--model", MODEL,
         "--profile", str(path), "--requests", "5", "--replicas-per-host", "2", "--rounds", "5",
         "--max-tokens", "6", "--record", str(tmp_path / "run.json")],
        env=env,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    p = profiles.load(path)
    # the record holds every request; applied again, it gives the profile written
    run = CalibrationRun.from_json(json.loads((tmp_path / "run.json").read_text()))
    assert (len(run.idle), len(run.crowded), len(run.together[2])) == (5, 5, 5)
    assert {len(r) for r in run.crowded} == {3} and run.tried[2] >= 5
    assert all(s.output_tokens == 6 and s.replica for s in run.idle)
    base = p.model_copy(update={"overhead_ms": 0.0, "prefill_spread": (), "decode_spread": (),
                                "host_slowdown": ()})  # fmt: skip
    again = cal.apply(base, run, calibrated_at=p.calibrated_at)
    assert again.model_dump() == p.model_dump()
    assert p.calibrated_at and (p.prefill, p.decode) == ((120.0, 2.0, 0.0), (30.0, 0.0))
    assert 0.0 <= p.overhead_ms < 100.0  # the fitted prefill alone is 226 ms
    assert len(p.prefill_spread) == len(p.decode_spread) == 5
    mid = sorted(p.prefill_spread)[2], sorted(p.decode_spread)[2]
    assert mid == pytest.approx((1.0, 1.0), abs=0.1)
    # 1.5 by construction; less by the gap between the two sends, more by a busy machine
    assert p.host_slowdown[0] == 1.0 and p.host_slowdown[1] == pytest.approx(1.5, abs=0.2)
    assert p.replicas_per_host == 2
    out = " ".join(done.output.split())
    queued = re.search(
        r"(\d+) requests queued behind another: the engine's prefill at ([\d.]+) x", out
    )
    assert queued and int(queued[1]) >= 3 and float(queued[2]) == pytest.approx(1.0, abs=0.1), out
    flat = "".join(out.split())  # Rich wraps at the terminal's width, even inside a path
    assert "2atonceon2replicas" in flat and f"written{path}" in flat


def test_plan_calibrate_names_bad_input(
    shared_fleet: tuple[ThreadServer, str, Path], tmp_path: Path
) -> None:
    server, key, path = shared_fleet
    env = {"MODELGRID_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    url = f"{server.base_url}/v1"

    def invoke(*args: str) -> tuple[int, str]:
        done = CliRunner().invoke(app, ["plan", "calibrate", *args], env=env)
        assert "Traceback" not in done.output
        return done.exit_code, " ".join(done.output.split())

    code, out = invoke("--key", "mg-wrong", "--url", url, "--model", MODEL, "--profile", str(path),
                       "--requests", "1")  # fmt: skip
    assert code == 2 and f"calibration: {url}/chat/completions answered 401" in out
    code, out = invoke("--key", key, "--url", url, "--model", "other", "--profile", str(path))
    assert code == 2 and f"--profile: {path} is a profile of 'shared-model', not 'other'" in out
    code, out = invoke("--key", key, "--url", url, "--model", MODEL,
                       "--profile", str(tmp_path / "none.json"))  # fmt: skip
    assert code == 2 and "no engine profile at" in out
    code, out = invoke("--key", key, "--url", url, "--model", MODEL, "--profile", str(path),
                       "--requests", "1", "--replicas-per-host", "3", "--rounds", "5",
                       "--max-tokens", "2")  # fmt: skip
    assert code == 2 and "in 15 rounds of 3 requests at once the gateway never placed" in out
    before = path.read_text()
    code, out = invoke("--key", key, "--url", url, "--model", MODEL, "--profile", str(path),
                       "--out", str(tmp_path))  # fmt: skip
    assert code == 2 and f"cannot write the profile to {tmp_path}: is a directory" in out
    code, out = invoke("--key", key, "--url", url, "--model", MODEL, "--profile", str(path),
                       "--record", str(tmp_path))  # fmt: skip
    assert code == 2 and f"--record {tmp_path}: is a directory" in out
    (tmp_path / "afile").write_text("x")
    code, out = invoke("--key", key, "--url", url, "--model", MODEL, "--profile", str(path),
                       "--out", str(tmp_path / "afile" / "p.json"))  # fmt: skip
    assert code == 2 and f"cannot write the profile to {tmp_path / 'afile' / 'p.json'}" in out
    unfitted = tmp_path / "unfitted.json"
    data = json.loads(before)
    data.pop("prefill")
    unfitted.write_text(json.dumps(data))
    code, out = invoke("--key", key, "--url", url, "--model", MODEL, "--profile", str(unfitted))
    assert code == 2 and f"--profile: {unfitted} has no prefill or decode fit" in out
    assert path.read_text() == before and not list(tmp_path.glob(".*.tmp"))
    code, out = invoke("--key", key, "--url", url, "--model", MODEL, "--profile", str(path),
                       "--replicas-per-host", "2", "--rounds", "4")  # fmt: skip
    assert code == 2 and (
        "--rounds: 4 rounds at once cannot show a host slowdown; at least 5 (a signed-rank test at "
        "0.05)" in out
    )  # fmt: skip


def test_measure_spaces_its_requests_when_asked() -> None:
    """``spacing_s`` waits before each idle request and each round (never before the
    warm-up); 0 (the default) never waits; a negative spacing is refused."""
    waits: list[float] = []

    async def record(s: float) -> None:
        waits.append(s)

    probe = ScriptedProbe(["a"] * 4 + ["a", "b", "a"] * 2 + ["a", "b"] * 2)
    asyncio.run(cal.measure(probe, requests=3, replicas_per_host=2, rounds=2, spacing_s=4.0,
                            sleep=record))  # fmt: skip
    assert waits == [4.0] * (3 + 2 + 2)  # 3 idle requests, 2 crowded rounds, 2 rounds of 2
    waits.clear()
    asyncio.run(cal.measure(ScriptedProbe(["a"] * 10), requests=3, sleep=record))
    assert waits == []
    with pytest.raises(PlanInputError, match="spacing must be >= 0"):
        asyncio.run(cal.measure(ScriptedProbe(["a"]), spacing_s=-1.0))
