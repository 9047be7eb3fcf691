"""The usage ledger read as demand: hours and gaps are of arrivals (a row's ``created_at``
less its ``total_ms``), not of completions."""

from __future__ import annotations

import itertools
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelgrid.tenancy.demand import read_demand
from tests.databases import insert_usage, migrated_sqlite, usage_row, with_sessions

START = datetime(2026, 11, 3, 14, 0, tzinfo=UTC)


def _read(tmp_path: Path, rows: list[dict[str, object]]) -> object:
    url = migrated_sqlite(tmp_path / "mg.db")

    async def go(sessions: object) -> object:
        await insert_usage(sessions, rows)
        return await read_demand(sessions, "2026-11")

    return with_sessions(url, go)


def test_burstiness_is_read_from_arrivals_not_from_the_smoothed_completions(
    tmp_path: Path,
) -> None:
    # 30 bursts 20 s apart of 5 requests 10 ms apart, served one after another in 2 s each:
    # completions 2 s apart within a burst, arrivals 10 ms apart
    arrivals, rows = [], []
    for burst in range(30):
        for i in range(5):
            at = START + timedelta(seconds=20 * burst, milliseconds=10 * i)
            done = START + timedelta(seconds=20 * burst + 2 * (i + 1))
            arrivals.append(at)
            rows.append(usage_row(f"r{burst}-{i}", done, model="m", region="local",
                                  total_ms=round((done - at).total_seconds() * 1000)))  # fmt: skip
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(arrivals)]
    expected = statistics.pvariance(gaps) / statistics.fmean(gaps) ** 2
    demand = _read(tmp_path, rows)
    assert abs(demand.gap_scv[("local", "m")] - expected) < 1e-6  # type: ignore[attr-defined]
    # what the completions' gaps (2, 2, 2, 2, 12 s) read: 1.0, arrivals as Poisson
    done = [(b["created_at"] - a["created_at"]).total_seconds()
            for a, b in itertools.pairwise(rows)]  # fmt: skip
    assert statistics.pvariance(done) / statistics.fmean(done) ** 2 == pytest.approx(1.0, abs=0.02)
    assert expected > 3.9


def test_a_request_counts_in_the_hour_it_arrived(tmp_path: Path) -> None:
    at = START + timedelta(minutes=59, seconds=59)
    row = usage_row("late", at + timedelta(seconds=3), model="m", region="local", total_ms=3000)
    demand = _read(tmp_path, [row])
    assert demand.counts == {("unknown", "local", "m", 14): 1}  # type: ignore[attr-defined]


def test_gaps_follow_arrival_order_when_requests_end_out_of_order(tmp_path: Path) -> None:
    # one request a second; every other one takes 5 s, so completions overtake arrivals
    rows = [
        usage_row(f"r{i}", START + timedelta(seconds=i, milliseconds=5000 if i % 2 else 100),
                  model="m", region="local", total_ms=5000 if i % 2 else 100)
        for i in range(40)
    ]  # fmt: skip
    demand = _read(tmp_path, rows)
    assert demand.gap_scv[("local", "m")] < 1e-9  # type: ignore[attr-defined]
