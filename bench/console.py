"""Console page queries over a large usage ledger, on SQLite and PostgreSQL (#14).

1. Seeds ``--rows`` ledger rows (default 10,000,000) over ``--days`` days ending at
   2026-12-06 00:00 UTC: 20 workspaces of 5 keys each, 6 models, 4 regions; keys, models and
   regions skewed as real traffic is (a few keys and models carry most of it); 3% 4xx, 1%
   5xx, 1% client gone (499), 5% batch lines, TTFT log-normal around 300 ms, in time order
   (as the ledger is written: random times would thrash the indexes). The rows go in
   by bulk insert (SQLite: ``executemany`` on the stdlib driver; PostgreSQL: ``COPY``), then
   the roll-ups are computed in bulk by ``storage.rollups.rebuild`` (the migration's
   backfill). Then ``--sample`` more rows go through the real write path
   (``repositories.insert_usage``, 256 a batch), and the bench checks that the day roll-ups
   sum to the ledger exactly (requests, tokens, cost).
2. Times each console read (``tenancy.usage_reports``, ``tenancy.billing``, the CLI's
   totals) ``--repeat`` times with varied filters (random workspaces, keys, models, regions,
   day ranges) and prints p50/p95/max in ms per page query, with the number of SQL
   statements each sends.

3. With ``--pages N``: each console page's full HTTP render (the real gateway over the same
   database, an operator and a workspace member signed in through the form), ``N`` times
   each, p50/p95/max in ms (``bench/console_pages.py``).

Run: ``.venv/bin/python bench/console.py [--rows 10000000] [--postgres] [--sqlite-path F]
[--reuse] [--pages 20] [--no-queries]`` (PostgreSQL at 127.0.0.1:5432, trust auth: a database ``mg_console_bench``,
re-created unless ``--reuse``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text

from modelgrid.storage import db, migrate, rollups
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import UsageRecord, Workspace, usage_rollups
from modelgrid.tenancy import billing, usage_reports

END = datetime(2026, 12, 6, tzinfo=UTC)
WORKSPACES = [f"ws_{i:02d}" for i in range(20)]
KEYS = {ws: [f"key_{ws[3:]}_{j}" for j in range(5)] for ws in WORKSPACES}
MODELS = ["qwen-72b", "llama-70b", "qwen-7b", "mistral-7b", "embed-small", "llama-8b"]
REGIONS = ["eu-west", "us-east", "asia-se", "cn-north"]
COLUMNS = (
    "request_id",
    "api_key_id",
    "workspace_id",
    "model",
    "region",
    "endpoint",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost_micros",
    "currency",
    "ttft_ms",
    "total_ms",
    "status",
    "finish_reason",
    "created_at",
    "batch_id",
)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PG_DB = "mg_console_bench"


def zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1 / (i + 1) ** s for i in range(n)]


def generate(n: int, days: int, seed: int, prefix: str) -> Iterator[tuple[Any, ...]]:
    """Ledger rows as tuples in ``COLUMNS`` order, ``created_at`` a UTC datetime."""
    rnd = random.Random(seed)
    choices = rnd.choices
    ws_cum = list(itertools.accumulate(zipf_weights(len(WORKSPACES))))
    model_cum = list(itertools.accumulate(zipf_weights(len(MODELS), 0.9)))
    key_cum = list(itertools.accumulate(zipf_weights(5, 1.3)))
    span_us = days * 86400 * 10**6
    start = END - timedelta(days=days)
    home = {ws: REGIONS[i % len(REGIONS)] for i, ws in enumerate(WORKSPACES)}
    other = {ws: REGIONS[(i + 1) % len(REGIONS)] for i, ws in enumerate(WORKSPACES)}
    currency = {ws: ("EUR" if i % 3 == 0 else "USD") for i, ws in enumerate(WORKSPACES)}
    for i in range(n):
        ws = choices(WORKSPACES, cum_weights=ws_cum)[0]
        key = choices(KEYS[ws], cum_weights=key_cum)[0]
        model = choices(MODELS, cum_weights=model_cum)[0]
        region = home[ws] if rnd.random() < 0.85 else other[ws]
        u = rnd.random()
        status = 200 if u < 0.95 else 400 if u < 0.98 else 499 if u < 0.99 else 500
        prompt = int(rnd.lognormvariate(6, 1))
        completion = 0 if model.startswith("embed") else int(rnd.lognormvariate(5, 1))
        ttft = None if status >= 400 and status != 499 else int(rnd.lognormvariate(5.7, 0.6))
        at = start + timedelta(microseconds=(i * span_us) // n + rnd.randrange(10**6))
        yield (
            f"{prefix}{i:09d}",
            key,
            ws,
            model,
            region,
            "chat.completions",
            prompt,
            prompt // 4,
            completion,
            prompt * 3 + completion * 9,
            currency[ws],
            ttft,
            (ttft or 0) + completion * 20,
            status,
            "stop" if status == 200 else "error",
            at,
            "batch_x" if rnd.random() < 0.05 else None,
        )


# --- seeding ---------------------------------------------------------------------------------


def seed_sqlite(path: Path, n: int, days: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA cache_size = -500000")
    sql = (
        f"INSERT INTO usage_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    )
    chunk: list[tuple[Any, ...]] = []
    for row in generate(n, days, 1, "r"):
        at = row[15]
        chunk.append((*row[:15], at.strftime("%Y-%m-%d %H:%M:%S.%f"), row[16]))
        if len(chunk) == 200_000:
            conn.executemany(sql, chunk)
            chunk.clear()
    conn.executemany(sql, chunk)
    conn.commit()
    conn.close()


def seed_postgres(dsn: str, n: int, days: int) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        with cur.copy(f"COPY usage_records ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in generate(n, days, 1, "r"):
                copy.write_row(row)
        conn.commit()


def workspaces_rows() -> list[dict[str, Any]]:
    return [
        {"id": ws, "name": ws, "currency": "EUR" if i % 3 == 0 else "USD", "created_at": END}
        for i, ws in enumerate(WORKSPACES)
    ]


async def rebuild_and_sample(url: str, sample: int, days: int) -> dict[str, float]:
    engine = db.create_engine(url)
    sessions = db.sessionmaker(engine)
    out: dict[str, float] = {}
    try:
        async with sessions() as session, session.begin():
            await session.execute(Workspace.__table__.insert(), workspaces_rows())
        t0 = time.perf_counter()
        async with sessions() as session, session.begin():
            out["rollup_rows"] = await rollups.rebuild(session)
        out["rebuild_s"] = time.perf_counter() - t0
        rows = [dict(zip(COLUMNS, r, strict=True)) for r in generate(sample, days, 2, "s")]
        t0 = time.perf_counter()
        for i in range(0, len(rows), 256):
            async with sessions() as session, session.begin():
                await repo.insert_usage(session, rows[i : i + 256])
        out["sample_s"] = time.perf_counter() - t0
        async with sessions() as session:  # the roll-ups equal the ledger, exactly
            raw = (
                await session.execute(
                    select(
                        func.count(),
                        func.sum(UsageRecord.prompt_tokens),
                        func.sum(UsageRecord.cost_micros),
                    )
                )
            ).one()
            r = usage_rollups.c
            rolled = (
                await session.execute(
                    select(
                        func.sum(r.requests), func.sum(r.prompt_tokens), func.sum(r.cost_micros)
                    ).where(r.granularity == "day")
                )
            ).one()
        assert tuple(map(int, raw)) == tuple(map(int, rolled)), (raw, rolled)
        out["ledger_rows"] = int(raw[0])
        if url.startswith("postgresql"):
            async with engine.connect() as conn:
                await conn.execute(text("COMMIT"))
                await conn.execute(text("VACUUM ANALYZE usage_rollups"))
                await conn.execute(text("VACUUM ANALYZE usage_records"))
        else:
            async with engine.connect() as conn:
                await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    return out


# --- the page queries ------------------------------------------------------------------------


def pages(sessions: Any, rnd: random.Random) -> dict[str, Callable[[], Awaitable[Any]]]:
    def ws() -> str:
        return rnd.choice(WORKSPACES)

    def day_range() -> tuple[date, date]:
        last = (END - timedelta(days=1 + rnd.randrange(5))).date()
        return last - timedelta(days=rnd.randrange(7)), last

    async def overview_30d_by_model() -> Any:
        return await usage_reports.overview(
            sessions,
            start=END - timedelta(days=30),
            end=END,
            granularity="day",
            by="model",
            workspace_id=rnd.choice([None, ws()]),
        )

    async def overview_24h_by_region() -> Any:
        end = END - timedelta(hours=rnd.randrange(48))
        return await usage_reports.overview(
            sessions,
            start=end - timedelta(hours=24),
            end=end,
            granularity="hour",
            by="region",
            workspace_id=rnd.choice([None, ws()]),
        )

    async def overview_60min() -> Any:
        end = END - timedelta(minutes=rnd.randrange(24 * 60))
        return await usage_reports.overview(
            sessions,
            start=end - timedelta(minutes=60),
            end=end,
            granularity="minute",
            workspace_id=rnd.choice([None, ws()]),
        )

    async def usage_table() -> Any:
        first, last = day_range()
        w = ws()
        filters: dict[str, Any] = rnd.choice(
            [
                {},
                {"workspace_id": w},
                {"workspace_id": w, "api_key_id": rnd.choice(KEYS[w])},
                {"model": rnd.choice(MODELS)},
                {"region": rnd.choice(REGIONS), "model": rnd.choice(MODELS)},
            ]
        )
        return await usage_reports.usage_table(sessions, first_day=first, last_day=last, **filters)

    async def invoice() -> Any:
        return await billing.invoice(sessions, ws(), rnd.choice(["2026-11", "2026-12"]))

    async def key_usage() -> Any:
        first, last = (END - timedelta(days=30)).date(), (END - timedelta(days=1)).date()
        return await usage_reports.key_usage(
            sessions, rnd.choice(KEYS[ws()]), first_day=first, last_day=last
        )

    async def cli_usage_totals() -> Any:
        async with sessions() as session:
            return await repo.usage_totals(session, "key"), await repo.usage_totals(
                session, "model"
            )

    async def admin_usage_page() -> Any:
        return await billing.usage(sessions, workspace=ws(), month="2026-11", limit=100)

    return {
        "overview 30 days by model (day)": overview_30d_by_model,
        "overview 24 h by region (hour)": overview_24h_by_region,
        "overview 60 min (minute)": overview_60min,
        "usage table, 1-7 days, filters": usage_table,
        "invoice (month)": invoice,
        "key holder's 30 days by model": key_usage,
        "modelgrid usage totals (CLI)": cli_usage_totals,
        "admin usage page + totals (API)": admin_usage_page,
    }


async def time_pages(url: str, repeat: int) -> list[tuple[str, float, float, float, float]]:
    engine = db.create_engine(url)
    statements = [0]

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def count(*_: Any) -> None:
        statements[0] += 1

    sessions = db.sessionmaker(engine)
    rnd = random.Random(42)
    results = []
    try:
        for name, fn in pages(sessions, rnd).items():
            await fn()  # warm: connection, compiled statement, page cache
            times = []
            statements[0] = 0
            for _ in range(repeat):
                t0 = time.perf_counter()
                await fn()
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
            per_call = statements[0] / repeat
            results.append((name, statistics.median(times), p95, times[-1], per_call))
            print(
                f"  {name:36s} p50 {results[-1][1]:7.1f} ms  p95 {p95:7.1f} ms  "
                f"max {times[-1]:7.1f} ms  {per_call:.0f} SQL",
                flush=True,
            )
    finally:
        await engine.dispose()
    return results


async def time_raw_baseline(url: str, repeat: int) -> None:
    """What the same pages cost summing the ledger at page load (the code before the
    roll-ups): an invoice's sums and the 30-day overview by model, ``repeat`` times each."""
    engine = db.create_engine(url)
    sessions = db.sessionmaker(engine)
    rnd = random.Random(43)
    u = UsageRecord
    start = END - timedelta(days=30)
    day: Any = (
        func.date_trunc("day", u.created_at)
        if url.startswith("postgresql")
        else func.substr(u.created_at, 1, 10)
    )

    def invoice_sums() -> Any:
        m0, m1 = repo.month_bounds(rnd.choice(["2026-11", "2026-12"]))
        cols = (u.model, u.region, u.currency, u.batch_id.is_not(None))
        return (
            select(*cols, func.count(), func.sum(u.prompt_tokens), func.sum(u.cost_micros))
            .where(u.workspace_id == rnd.choice(WORKSPACES))
            .where(u.created_at >= m0, u.created_at < m1)
            .group_by(*cols)
        )

    def overview_30d() -> Any:
        return (
            select(day, u.model, func.count(), func.sum(u.prompt_tokens), func.sum(u.cost_micros))
            .where(u.created_at >= start, u.created_at < END)
            .group_by(day, u.model)
        )

    try:
        for name, make in (
            ("raw: invoice sums (month)", invoice_sums),
            ("raw: overview 30 days by model", overview_30d),
        ):
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                async with sessions() as session:
                    (await session.execute(make())).all()
                times.append((time.perf_counter() - t0) * 1000)
            print(
                f"  {name:36s} p50 {statistics.median(times):7.0f} ms  max {max(times):7.0f} ms"
                f"  ({repeat} calls, summing ledger rows)",
                flush=True,
            )
    finally:
        await engine.dispose()


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def run(kind: str, args: argparse.Namespace) -> None:
    print(f"== {kind}: {args.rows:,} rows over {args.days} days", flush=True)
    if kind == "postgresql":
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_DB}"
        if not args.reuse:
            pg_admin(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
            pg_admin(f'CREATE DATABASE "{PG_DB}"')
    else:
        path = Path(args.sqlite_path or Path(tempfile.gettempdir()) / "mg_console_bench.db")
        url = f"sqlite+aiosqlite:///{path}"
        if not args.reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    if args.reuse:  # a database seeded by an older revision gains the newer indexes
        t0 = time.perf_counter()
        migrate.upgrade(url)
        print(f"  migrated to head in {time.perf_counter() - t0:.1f} s", flush=True)
    else:
        migrate.upgrade(url)
        t0 = time.perf_counter()
        if kind == "postgresql":
            seed_postgres(f"postgresql://postgres@127.0.0.1:5432/{PG_DB}", args.rows, args.days)
        else:
            seed_sqlite(path, args.rows, args.days)
        seeded = time.perf_counter() - t0
        info = asyncio.run(rebuild_and_sample(url, args.sample, args.days))
        print(
            f"  seeded {args.rows:,} ledger rows in {seeded:.0f} s "
            f"({args.rows / seeded:,.0f} rows/s); roll-ups rebuilt in {info['rebuild_s']:.0f} s "
            f"({int(info['rollup_rows']):,} roll-up rows); {args.sample:,} rows through "
            f"insert_usage in {info['sample_s']:.1f} s; day roll-ups = ledger "
            f"({int(info['ledger_rows']):,} rows): exact",
            flush=True,
        )
    if kind == "sqlite":
        size = sum(
            Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()
        )
        print(f"  file {size / 2**30:.2f} GiB", flush=True)
    if not args.no_queries:
        asyncio.run(time_pages(url, args.repeat))
    if args.pages:
        from console_pages import time_pages as time_page_renders

        print(f"  page renders over HTTP ({args.pages} each after a warm-up):", flush=True)
        time_page_renders(url, args.pages)
    if args.raw_baseline:
        asyncio.run(time_raw_baseline(url, args.raw_baseline))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--sample", type=int, default=5120, help="rows through insert_usage")
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--postgres", action="store_true", help="also PostgreSQL")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--sqlite-path", help="the SQLite file (default: in the temp folder)")
    ap.add_argument("--reuse", action="store_true", help="time the existing databases only")
    ap.add_argument(
        "--pages", type=int, default=0, metavar="N", help="also time N HTTP renders of each page"
    )
    ap.add_argument("--no-queries", action="store_true", help="skip the read functions' timings")
    ap.add_argument(
        "--raw-baseline",
        type=int,
        default=0,
        metavar="N",
        help="also time N calls of two pages summing the ledger instead (the code before)",
    )
    args = ap.parse_args()
    print(
        f"# {datetime.now(UTC):%Y-%m-%dT%H:%M:%S}  cpus={os.cpu_count()}  load1 "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if not args.no_sqlite:
        run("sqlite", args)
    if args.postgres:
        run("postgresql", args)


if __name__ == "__main__":
    main()
