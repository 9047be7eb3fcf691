"""Engine profiles: the fit, the serial engine, the file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from modelgrid.planner import PlanInputError
from modelgrid.planner import profile as profiles
from modelgrid.planner.profile import ProfilePoint


def points(batch_tps: dict[int, float]) -> list[ProfilePoint]:
    """Prefill 30 + 2 n ms, decode 20 + 0.01 m ms; throughput per batch size as given."""
    out = []
    for b, tps in batch_tps.items():
        for n in (32, 128, 512):
            m = n + 16 / 2
            out.append(ProfilePoint(batch=b, prompt_tokens=n, output_tokens=16,
                                    prefill_ms=30 + 2 * n, decode_ms=20 + 0.01 * m,
                                    throughput_tps=tps))  # fmt: skip
    return out


def test_fit_recovers_the_model_and_a_serial_engine() -> None:
    p = profiles.fit("m", points({1: 40.0, 2: 41.0, 4: 40.5}))
    a, b, c = p.prefill
    assert (a, b) == (pytest.approx(30.0, abs=1e-6), pytest.approx(2.0, abs=1e-9))
    assert c == pytest.approx(0.0, abs=1e-9)
    assert p.decode == (pytest.approx(20.0, abs=1e-6), pytest.approx(0.01, abs=1e-9))
    assert p.slots == 1  # the throughput does not grow with the batch: one at a time
    assert float(p.service_ms(100, 11)) == pytest.approx(230 + 10 * (20 + 0.01 * 105.5))


def test_a_batching_engine_gets_slots() -> None:
    assert profiles.fit("m", points({1: 40.0, 4: 120.0})).slots == 4


def test_save_and_load(tmp_path: Path) -> None:
    p = profiles.fit("m", points({1: 40.0}), measured_at="2026-11-30T00:00:00+00:00")
    path = profiles.default_path(tmp_path, "m")
    profiles.save(p, path)
    assert profiles.load(path) == p
    # where it cannot be written: a clear error naming the path, no temporary file left
    (tmp_path / "afile").write_text("x")
    for bad, why in ((tmp_path, "is a directory"), (tmp_path / "afile" / "p.json", "")):
        with pytest.raises(PlanInputError, match=f"cannot write the profile to {bad}: {why}"):
            profiles.save(p, bad)
        with pytest.raises(PlanInputError, match=f"cannot write the profile to {bad}: {why}"):
            profiles.check_writable(bad)
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_link_is_followed_and_what_is_not_a_regular_file_is_never_replaced(
    tmp_path: Path,
) -> None:
    p = profiles.fit("m", points({1: 40.0}), measured_at="2026-11-30T00:00:00+00:00")
    real, link = tmp_path / "real.json", tmp_path / "link.json"
    real.write_text("{}")
    link.symlink_to(real)
    profiles.save(p, link)
    assert link.is_symlink() and profiles.load(real) == p
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for bad, why in ((fifo, "not a regular file"), (Path(""), "not a file name"),
                     (Path("/"), "not a file name"), (tmp_path / "..", "not a file name")):  # fmt: skip
        with pytest.raises(PlanInputError, match=f"cannot write the profile to {bad}: {why}"):
            profiles.save(p, bad)
        with pytest.raises(PlanInputError, match=f"cannot write the profile to {bad}: {why}"):
            profiles.check_writable(bad)
    assert fifo.exists() and not fifo.is_file()
    assert not list(tmp_path.rglob(".*.tmp"))


def test_bad_profiles_are_named(tmp_path: Path) -> None:
    with pytest.raises(PlanInputError, match="run `modelgrid plan profile`"):
        profiles.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"model": "m", "slots": 0}')
    with pytest.raises(PlanInputError, match=r"bad\.json"):
        profiles.load(tmp_path / "bad.json")
    with pytest.raises(PlanInputError, match="two prompt lengths"):
        profiles.fit("m", points({1: 1.0})[:1])
    # JSON that is no object, and a field's problem: the message says which and why
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(PlanInputError, match=r"list\.json: a JSON object is needed, not list$"):
        profiles.load(tmp_path / "list.json")
    with pytest.raises(
        PlanInputError,
        match=r"bad\.json: slots: Input should be greater than or equal to 1 \(got 0\)",
    ):
        profiles.load(tmp_path / "bad.json")


def test_the_prefill_fit_has_no_negative_coefficient() -> None:
    """Prefill measured as -20 + n + 0.002 n^2 ms: least squares puts the fixed cost below
    0 (a 1-token prompt in negative time); the fit goes through the origin instead, both
    other terms positive. A concave curve (c < 0) is refitted linear, as before."""

    def measured(prefill_ms: Callable[[int], float]) -> list[ProfilePoint]:
        return [ProfilePoint(batch=1, prompt_tokens=n, output_tokens=16,
                             prefill_ms=prefill_ms(n), decode_ms=20, throughput_tps=40)
                for n in (32, 128, 512)]  # fmt: skip

    convex = measured(lambda n: -20 + n + 0.002 * n * n)
    n = np.array([32.0, 128.0, 512.0])
    y = np.array([p.prefill_ms for p in convex])
    free, *_ = np.linalg.lstsq(np.stack([np.ones(3), n, n * n], axis=1), y)
    assert free[0] == pytest.approx(-20.0)  # what least squares alone gives
    a, b, c = profiles.fit("m", convex).prefill
    assert a == 0.0 and b > 0 and c > 0
    assert float(profiles.fit("m", convex).prefill_ms(1)) > 0
    # the cost: the 32-token point, 14 ms, now sits at half its fitted time
    assert profiles.fit("m", convex).prefill_spread[0] == pytest.approx(0.523, abs=0.001)
    concave = measured(lambda n: 100 + 3 * n - 0.002 * n * n)
    a, b, c = profiles.fit("m", concave).prefill
    assert c == 0.0 and a > 0 and b > 0


def test_fit_records_the_measured_spread() -> None:
    """Exact points have spread 1 everywhere; a repeat of 128 tokens measured 20 % slower
    in both phases moves the fit a little and shows as the largest ratio."""
    exact = profiles.fit("m", points({1: 40.0}))
    assert exact.prefill_spread == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    assert exact.decode_spread == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    slow = [
        p.model_copy(update={"prefill_ms": p.prefill_ms * 1.2, "decode_ms": p.decode_ms * 1.2})
        for p in points({1: 40.0})
        if p.prompt_tokens == 128
    ]
    p = profiles.fit("m", points({1: 40.0}) + slow)
    assert len(p.prefill_spread) == len(p.decode_spread) == 4
    assert max(p.prefill_spread) == pytest.approx(
        1.2 * (30 + 2 * 128) / float(p.prefill_ms(128)), abs=1e-4
    )
    assert max(p.decode_spread) > 1.05 and min(p.decode_spread) < 1.0


def test_calibrate_measures_the_overhead_and_the_spreads() -> None:
    """Five requests of 100 uncached tokens (fitted prefill 230 ms, decode 21.06 ms at 100 +
    11/2): TTFT = 250 + 230 x f, TPOT = 21.06 x g. The overhead is the median residual
    (250: f's median is 1), the spreads are f and g, sorted."""
    base = profiles.fit("m", points({1: 40.0})).model_copy(
        update={"recalibrated_on": "2026-12-05T10:00:00+00:00/2026-12-05T11:00:00+00:00"}
    )
    f, g = [1.0, 1.2, 0.9, 1.0, 1.1], [1.0, 1.3, 1.0, 0.95, 1.1]
    prefill, decode = float(base.prefill_ms(100)), float(base.decode_ms(100, 11))
    seen = [
        profiles.Observed(100, 11, 250 + prefill * a, decode * b) for a, b in zip(f, g, strict=True)
    ]
    p = profiles.calibrate(base, seen, calibrated_at="2026-12-06T12:00:00+00:00")
    assert p.overhead_ms == pytest.approx(250.0)
    assert p.prefill_spread == pytest.approx(sorted(f), abs=1e-4)
    assert p.decode_spread == pytest.approx(sorted(g), abs=1e-4)
    assert (p.prefill, p.decode, p.calibrated_at, p.recalibrated_on) == (
        base.prefill, base.decode, "2026-12-06T12:00:00+00:00", ""
    )  # fmt: skip
    with pytest.raises(PlanInputError, match="no request observed"):
        profiles.calibrate(base, [])
    # first tokens sooner than the prefill alone: the residual says by how much (-30 ms),
    # the overhead is floored at 0
    early = [profiles.Observed(100, 11, prefill - 30, decode)] * 3
    assert profiles.path_residual_ms(base, early) == pytest.approx(-30.0)
    assert profiles.calibrate(base, early).overhead_ms == 0.0


def test_profiling_sends_greedy_unseeded_requests() -> None:
    """Most traffic is unseeded, and a seeded request costs the llama.cpp engine one more
    decode step before its first token (``_settle_prompt``): the profile measures the
    unseeded path (greedy, so the output is the same)."""
    import asyncio

    from modelgrid.core.types import InferenceRequest
    from modelgrid.engines.base import PreparedRequest
    from modelgrid.engines.fake import FakeEngine
    from modelgrid.planner.profiling import ProfileGrid, measure

    sent: list[InferenceRequest] = []

    class Recording(FakeEngine):
        def prepare(self, request: InferenceRequest) -> PreparedRequest:
            sent.append(request)
            return super().prepare(request)

    engine = Recording("m", reply="1 2 3 4 5 6 7 8", context_length=256)
    found = asyncio.run(measure(engine, ProfileGrid((8, 16), (1,), 4, 1)))
    assert [(p.prompt_tokens, p.output_tokens) for p in found] == [(8, 4.0), (16, 4.0)]
    assert sent and {(r.sampling.seed, r.sampling.temperature) for r in sent} == {(None, 0.0)}
