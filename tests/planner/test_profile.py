"""Engine profiles: the fit, the serial engine, the file."""

from __future__ import annotations

from pathlib import Path

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


def test_bad_profiles_are_named(tmp_path: Path) -> None:
    with pytest.raises(PlanInputError, match="run `modelgrid plan profile`"):
        profiles.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"model": "m", "slots": 0}')
    with pytest.raises(PlanInputError, match=r"bad\.json"):
        profiles.load(tmp_path / "bad.json")
    with pytest.raises(PlanInputError, match="two prompt lengths"):
        profiles.fit("m", points({1: 1.0})[:1])
