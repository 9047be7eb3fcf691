"""Usage roll-ups on SQLite and PostgreSQL: every ledger row counted exactly once at each
granularity (retried and replayed batches, duplicates inside a batch, the usage writer, the
migration's backfill, a rebuild), and every read served from them equal to summing the ledger."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from modelgrid.storage import db, migrate, rollups
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import (
    ROLLUP_DIMENSIONS,
    ROLLUP_MEASURES,
    WORKSPACE_ROLLUP_DIMENSIONS,
    UsageRecord,
)
from modelgrid.tenancy import usage_reports
from modelgrid.tenancy.events import UsageEvent
from modelgrid.tenancy.metering import UsageWriter
from tests.databases import (
    BOTH_DATABASES,
    insert_usage,
    postgres_database,
    usage_row,
    with_sessions,
)

T0 = datetime(2026, 11, 29, 22, 0, tzinfo=UTC)  # three days over the end of November
BOUNDS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)


def ledger(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        at = T0 + timedelta(seconds=rnd.randrange(3 * 86400), microseconds=rnd.randrange(10**6))
        rows.append(
            usage_row(
                f"req-{i:05d}",
                at,
                workspace_id=rnd.choice(["ws-a", "ws-b", None]),
                api_key_id=rnd.choice(["k1", "k2", "k3", None]),
                model=rnd.choice(["m1", "m2"]),
                region=rnd.choice([None, "eu", "us"]),
                currency=rnd.choice([None, "USD", "EUR"]),
                status=rnd.choice([200, 200, 200, 400, 499, 500, 503]),
                prompt_tokens=rnd.randrange(5000),
                cached_tokens=rnd.randrange(100),
                completion_tokens=rnd.randrange(2000),
                cost_micros=rnd.randrange(10**10),
                ttft_ms=rnd.choice([None, rnd.randrange(12000), rnd.randrange(400)]),
                batch_id=rnd.choice([None, None, "batch_1"]),
            )
        )
    return rows


def _truncate(ts: datetime, granularity: str) -> datetime:
    ts = ts.astimezone(UTC)
    fields = {"minute": 5, "hour": 4, "day": 3}[granularity]
    return datetime(*ts.timetuple()[:fields], tzinfo=UTC)  # type: ignore[misc]


def expected(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[int]]:
    """The roll-ups summed here, row by row, independently of ``storage.rollups``."""
    out: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(ROLLUP_MEASURES))
    for r in rows:
        for g in ("minute", "hour", "day"):
            key = (
                g,
                _truncate(r["created_at"], g),
                r["workspace_id"] or "",
                r["api_key_id"] or "",
                r["model"],
                r["region"] or "",
                r["currency"] or "",
                int(r.get("batch_id") is not None),
                r["status"] // 100,
            )
            v = out[key]
            ttft = r["ttft_ms"]
            hist = [0] * 13
            if ttft is not None:
                hist[sum(1 for b in BOUNDS if ttft > b)] = 1
            for i, x in enumerate(
                [
                    1,
                    int(r["status"] >= 400 and r["status"] != 499),
                    r["prompt_tokens"],
                    r["cached_tokens"],
                    r["completion_tokens"],
                    r["cost_micros"],
                    ttft or 0,
                    int(ttft is not None),
                    *hist,
                ]
            ):
                v[i] += x
    return dict(out)


def without_keys(rolled: dict[tuple[Any, ...], list[int]]) -> dict[tuple[Any, ...], list[int]]:
    """``usage_workspace_rollups`` as ``expected`` gives it: the keys added together."""
    out: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(ROLLUP_MEASURES))
    for key, v in rolled.items():
        w = out[key[:3] + key[4:]]
        for i, x in enumerate(v):
            w[i] += x
    return dict(out)


async def stored(sessions: Any, table: str = "usage_rollups") -> dict[tuple[Any, ...], list[int]]:
    dims = ROLLUP_DIMENSIONS if table == "usage_rollups" else WORKSPACE_ROLLUP_DIMENSIONS
    cols = ", ".join((*dims, *ROLLUP_MEASURES))
    async with sessions() as session:
        rows = (await session.execute(text(f"SELECT {cols} FROM {table}"))).all()
    out = {}
    n = len(dims)
    for row in rows:
        bucket = row[1]
        if isinstance(bucket, str):
            bucket = datetime.fromisoformat(bucket)
        key = (row[0], rollups.utc(bucket), *row[2:n])
        out[key] = [int(x) for x in row[n:]]
    return out


async def both(sessions: Any) -> tuple[dict[tuple[Any, ...], list[int]], ...]:
    return await stored(sessions), await stored(sessions, "usage_workspace_rollups")


def want_both(rows: list[dict[str, Any]]) -> tuple[dict[tuple[Any, ...], list[int]], ...]:
    full = expected(rows)
    return full, without_keys(full)


@BOTH_DATABASES
def test_each_ledger_row_is_rolled_up_once_at_each_granularity(database_url: str) -> None:
    rows = ledger(600)

    async def go(sessions: Any) -> None:
        async with sessions() as session, session.begin():
            assert await repo.insert_usage(session, rows[:250]) == 250
        async with sessions() as session, session.begin():  # a retried batch adds nothing
            assert await repo.insert_usage(session, rows[:250]) == 0
        replay = [*rows[200:400], dict(rows[300], prompt_tokens=10**6)]  # overlap, a duplicate
        async with sessions() as session, session.begin():
            assert await repo.insert_usage(session, replay) == 150
        await insert_usage(sessions, rows[400:])
        want = want_both(rows)
        assert await both(sessions) == want
        if database_url.startswith("sqlite"):  # the text SQLAlchemy writes, else no conflict
            async with sessions() as session:
                formats = await session.execute(
                    text(
                        "SELECT DISTINCT length(bucket_start), substr(bucket_start, 17) "
                        "FROM usage_rollups WHERE granularity = 'minute'"
                    )
                )
                assert set(formats.all()) == {(26, ":00.000000")}
        assert sum(v[0] for k, v in want[1].items() if k[0] == "day") == 600
        assert len(want[1]) < len(want[0])
        async with sessions() as session, session.begin():
            assert await rollups.rebuild(session) == len(want[0])
        assert await both(sessions) == want

    with_sessions(database_url, go)


@BOTH_DATABASES
def test_a_failed_transaction_leaves_no_roll_up(database_url: str) -> None:
    rows = ledger(20)

    async def go(sessions: Any) -> None:
        with pytest.raises(RuntimeError):
            async with sessions() as session, session.begin():
                await repo.insert_usage(session, rows)
                raise RuntimeError("rolled back")
        assert await both(sessions) == ({}, {})
        await insert_usage(sessions, rows)
        assert await both(sessions) == want_both(rows)

    with_sessions(database_url, go)


@BOTH_DATABASES
def test_the_usage_writer_rolls_up_what_it_writes_once(database_url: str) -> None:
    events = [
        UsageEvent(
            request_id=f"ev-{i}",
            client_request_id=None,
            api_key_id="k1",
            workspace_id="ws-a",
            model="m1",
            endpoint="chat.completions",
            prompt_tokens=10 + i,
            completion_tokens=i,
            ttft_ms=100 * i,
            total_ms=1000,
            status=200,
            finish_reason="stop",
            created_at=T0 + timedelta(seconds=30 * i),
            cost_micros=1000 * i,
            currency="USD",
        )
        for i in range(10)
    ]

    async def go(sessions: Any) -> None:
        for _ in range(2):  # the second writer replays the same events (a respooled batch)
            writer = UsageWriter(sessions, batch_size=4)
            for e in events:
                writer.record(e)
            await writer.flush()
        got = await usage_reports.overview(
            sessions, start=T0, end=T0 + timedelta(minutes=5), granularity="minute"
        )
        assert [(p.bucket_start, p.requests) for p in got] == [
            (T0 + timedelta(minutes=m), 2) for m in range(5)
        ]
        assert sum(p.prompt_tokens for p in got) == sum(10 + i for i in range(10))
        assert sum(p.cost_micros["USD"] for p in got) == 45_000
        assert sum(p.ttft_sum_ms for p in got) == 4500

    with_sessions(database_url, go)


# --- the reads equal summing the ledger ------------------------------------------------------


async def raw_usage_totals(session: Any, by: str) -> list[repo.UsageTotal]:
    col: Any = UsageRecord.api_key_id if by == "key" else UsageRecord.model
    stmt = (
        select(
            col,
            func.count(),
            func.sum(UsageRecord.prompt_tokens),
            func.sum(UsageRecord.completion_tokens),
        )
        .group_by(col)
        .order_by(col)
    )
    return [
        repo.UsageTotal(str(g), int(n), int(p), int(c))
        for g, n, p, c in (await session.execute(stmt)).all()
    ]


async def raw_usage_sums(
    session: Any, workspace_id: str | None, start: datetime, end: datetime
) -> set[repo.UsageSum]:
    cols = (
        UsageRecord.model,
        UsageRecord.region,
        UsageRecord.currency,
        UsageRecord.batch_id.is_not(None),
    )
    stmt = (
        select(
            *cols,
            func.count(),
            func.sum(UsageRecord.prompt_tokens),
            func.sum(UsageRecord.cached_tokens),
            func.sum(UsageRecord.completion_tokens),
            func.sum(UsageRecord.cost_micros),
        )
        .where(UsageRecord.created_at >= start, UsageRecord.created_at < end)
        .group_by(*cols)
    )
    if workspace_id is not None:
        stmt = stmt.where(UsageRecord.workspace_id == workspace_id)
    return {
        repo.UsageSum(m, r, c, int(n), int(p), int(ca), int(co), int(cost), bool(b))
        for m, r, c, b, n, p, ca, co, cost in (await session.execute(stmt)).all()
    }


@BOTH_DATABASES
def test_cli_admin_and_invoice_sums_equal_the_ledger(database_url: str) -> None:
    rows = ledger(500, seed=11)

    async def go(sessions: Any) -> None:
        await insert_usage(sessions, rows)
        async with sessions() as session:
            for by in ("key", "model"):
                assert await repo.usage_totals(session, by) == await raw_usage_totals(session, by)
            for month in ("2026-11", "2026-12"):
                start, end = repo.month_bounds(month)
                for ws in ("ws-a", "ws-b", None):
                    got = await repo.usage_sums(session, workspace_id=ws, start=start, end=end)
                    assert set(got) == await raw_usage_sums(session, ws, start, end)
                    mine = [
                        r
                        for r in rows
                        if start <= r["created_at"] < end and ws in (None, r["workspace_id"])
                    ]
                    assert await repo.month_totals(session, month, workspace_id=ws) == (
                        sum(r["cost_micros"] for r in mine),
                        sum(r["prompt_tokens"] + r["completion_tokens"] for r in mine),
                    )
                of_k2 = [
                    r for r in rows if start <= r["created_at"] < end and r["api_key_id"] == "k2"
                ]
                assert await repo.month_totals(session, month, api_key_id="k2") == (
                    sum(r["cost_micros"] for r in of_k2),
                    sum(r["prompt_tokens"] + r["completion_tokens"] for r in of_k2),
                )
            with pytest.raises(ValueError, match="midnight"):
                await repo.usage_sums(session, start=T0 + timedelta(hours=1))

    with_sessions(database_url, go)


@BOTH_DATABASES
def test_overview_series_equal_the_ledger(database_url: str) -> None:
    rows = ledger(500, seed=3)

    async def go(sessions: Any) -> None:
        await insert_usage(sessions, rows)
        for granularity, start, end, by, ws in (
            ("hour", T0, T0 + timedelta(days=3), "model", None),
            ("day", T0, T0 + timedelta(days=4), "region", "ws-a"),
            ("minute", T0 + timedelta(hours=5, seconds=30), T0 + timedelta(hours=7), None, None),
        ):
            got = await usage_reports.overview(
                sessions, start=start, end=end, granularity=granularity, by=by, workspace_id=ws
            )
            first = _truncate(start, granularity)
            want: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 6)
            costs: dict[tuple[Any, ...], dict[str, int]] = defaultdict(dict)
            hists: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 13)
            for r in rows:
                if not first <= r["created_at"] < end or ws not in (None, r["workspace_id"]):
                    continue
                key = (_truncate(r["created_at"], granularity), r[by] or "" if by else None)
                v = want[key]
                v[0] += 1
                v[1] += r["status"] >= 400 and r["status"] != 499
                v[2] += r["prompt_tokens"]
                v[3] += r["completion_tokens"]
                v[4] += r["ttft_ms"] or 0
                v[5] += r["ttft_ms"] is not None
                cur = r["currency"] or ""
                costs[key][cur] = costs[key].get(cur, 0) + r["cost_micros"]
                if r["ttft_ms"] is not None:
                    hists[key][sum(1 for b in BOUNDS if r["ttft_ms"] > b)] += 1
            assert len(got) == len(want) > 0
            assert [(p.bucket_start, p.group) for p in got] == sorted(want)
            for p in got:
                key = (p.bucket_start, p.group)
                assert [
                    p.requests,
                    p.errors,
                    p.prompt_tokens,
                    p.completion_tokens,
                    p.ttft_sum_ms,
                    p.ttft_count,
                ] == want[key]
                assert p.cost_micros == costs[key]
                assert p.ttft_histogram == hists[key]
                assert p.error_rate == want[key][1] / want[key][0]

    with_sessions(database_url, go)


@BOTH_DATABASES
def test_usage_table_and_key_usage_equal_the_ledger(database_url: str) -> None:
    rows = ledger(400, seed=5)

    async def go(sessions: Any) -> None:
        await insert_usage(sessions, rows)
        first, last = date(2026, 11, 30), date(2026, 12, 1)
        for filters in ({}, {"workspace_id": "ws-b", "model": "m2"}, {"region": "eu"}):
            got = await usage_reports.usage_table(
                sessions, first_day=first, last_day=last, **filters
            )
            want: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 6)
            for r in rows:
                day = r["created_at"].date()
                if not first <= day <= last:
                    continue
                if any(r[k] != v for k, v in filters.items()):
                    continue
                key = (
                    day,
                    r["workspace_id"] or "",
                    r["api_key_id"] or "",
                    r["model"],
                    r["region"] or "",
                    r["currency"] or "",
                )
                v = want[key]
                for i, x in enumerate(
                    (
                        1,
                        int(r["status"] >= 400 and r["status"] != 499),
                        r["prompt_tokens"],
                        r["cached_tokens"],
                        r["completion_tokens"],
                        r["cost_micros"],
                    )
                ):
                    v[i] += x
            assert [
                (
                    (ln.day, ln.workspace_id, ln.api_key_id, ln.model, ln.region, ln.currency),
                    [
                        ln.requests,
                        ln.errors,
                        ln.prompt_tokens,
                        ln.cached_tokens,
                        ln.completion_tokens,
                        ln.cost_micros,
                    ],
                )
                for ln in got
            ] == sorted(want.items())
        mine = await usage_reports.key_usage(sessions, "k3", first_day=first, last_day=last)
        assert {(p.bucket_start.date(), p.group): p.requests for p in mine} == {
            k: n
            for k, n in _count(
                (r["created_at"].date(), r["model"])
                for r in rows
                if r["api_key_id"] == "k3" and first <= r["created_at"].date() <= last
            ).items()
        }

    with_sessions(database_url, go)


def _count(keys: Any) -> dict[Any, int]:
    out: dict[Any, int] = defaultdict(int)
    for k in keys:
        out[k] += 1
    return dict(out)


def test_ttft_percentiles_interpolate_inside_a_bucket() -> None:
    hist = [0] * 13
    hist[0], hist[1] = 50, 50  # 50 at <= 50 ms, 50 in (50, 100]
    assert usage_reports.ttft_quantile(hist, 0.5) == 50.0
    assert usage_reports.ttft_quantile(hist, 0.95) == 95.0
    assert usage_reports.ttft_quantile([0] * 13, 0.5) is None
    assert usage_reports.ttft_quantile([0] * 12 + [3], 0.95) == 10000.0
    rnd = random.Random(1)  # uniform values: the estimate is within a bucket of the truth
    values = sorted(rnd.randrange(2000) for _ in range(10_000))
    hist = [0] * 13
    for v in values:
        hist[sum(1 for b in BOUNDS if v > b)] += 1
    for q in (0.5, 0.95):
        est = usage_reports.ttft_quantile(hist, q)
        assert est is not None and abs(est - values[int(q * len(values))]) <= 25


def test_overview_refuses_too_many_buckets_and_bad_names() -> None:
    from modelgrid.core.errors import InvalidRequestError

    async def never() -> Any:
        raise AssertionError("no query")

    import asyncio

    for kwargs in (
        {"granularity": "minute", "end": T0 + timedelta(days=2)},
        {"granularity": "week", "end": T0 + timedelta(days=2)},
        {"by": "workspace", "end": T0 + timedelta(days=2)},
        {"end": T0},
    ):
        with pytest.raises(InvalidRequestError):
            asyncio.run(usage_reports.overview(never, start=T0, **kwargs))  # type: ignore[arg-type]


# --- the migration's backfill ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_0007_backfills_the_existing_ledger(kind: str, tmp_path: Path) -> None:
    rows = ledger(300, seed=9)

    def check(url: str) -> None:
        migrate.upgrade(url, "0006")

        async def before(sessions: Any) -> None:
            async with sessions() as session, session.begin():
                await session.execute(UsageRecord.__table__.insert(), rows)

        async def run(fn: Any) -> Any:
            engine = db.create_engine(url)
            try:
                return await fn(db.sessionmaker(engine))
            finally:
                await engine.dispose()

        import asyncio

        asyncio.run(run(before))
        migrate.upgrade(url)
        assert asyncio.run(run(both)) == want_both(rows)

    if kind == "postgres":
        with postgres_database(migrated=False) as url:
            check(url)
    else:
        check(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")


def test_inserts_go_in_pages_of_nine_sizes_at_most() -> None:
    """One prepared statement per page size: the sizes are powers of two up to 256."""
    sizes = set()
    for n in range(1, 700):
        pages = repo._pages(n)
        assert pages[0][0] == 0 and pages[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(pages))
        sizes.update(end - start for start, end in pages)
    assert sizes == {1, 2, 4, 8, 16, 32, 64, 128, 256}
