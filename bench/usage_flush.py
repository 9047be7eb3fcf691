"""The usage writer's flush with and without the roll-ups (#14), SQLite and PostgreSQL.

One flush = one transaction inserting a batch of 256 ledger rows. "before" is the statement
the writer ran before the roll-ups (``INSERT … ON CONFLICT (request_id) DO NOTHING``,
executemany); "after" is ``repositories.insert_usage`` today (the same insert with
``RETURNING request_id``, then one ``INSERT … ON CONFLICT DO UPDATE`` into each roll-up
table). Wall time per flush, and this process's CPU time (what the flush takes from the
gateway's event loop and its threads: SQLite runs in aiosqlite's thread, PostgreSQL's server
is another process). Each runs on its own fresh database; batches alternate before/after so the machine's
noise falls on both. A batch is what a busy gateway flushes: rows of the same half second,
from 100 keys of 20 workspaces, 6 models, 4 regions (``--one-key``: one key, model and
region, as ``bench/gateway_overhead.py`` sends).

Run: ``.venv/bin/python bench/usage_flush.py [--batches 200] [--postgres]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelgrid.storage import db, migrate
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import UsageRecord

BATCH = 256
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def batch(
    rnd: random.Random, n: int, at: datetime, *, one_key: bool = False
) -> list[dict[str, Any]]:
    rows = []
    for _ in range(n):
        ws = 0 if one_key else rnd.randrange(20)
        rows.append(
            {
                "request_id": secrets.token_hex(12),
                "client_request_id": None,
                "api_key_id": f"key_{ws}_{0 if one_key else rnd.randrange(5)}",
                "workspace_id": f"ws_{ws}",
                "model": "a" if one_key else rnd.choice(["a", "b", "c", "d", "e", "f"]),
                "region": "eu" if one_key else rnd.choice(["eu", "us", "asia", "cn"]),
                "endpoint": "chat.completions",
                "prompt_tokens": rnd.randrange(2000),
                "cached_tokens": 0,
                "completion_tokens": rnd.randrange(500),
                "cost_micros": rnd.randrange(10000),
                "currency": "USD",
                "price_id": 1,
                "ttft_ms": rnd.randrange(1500),
                "total_ms": 2000,
                "status": 200 if rnd.random() < 0.97 else 500,
                "finish_reason": "stop",
                "created_at": at + timedelta(milliseconds=rnd.randrange(500)),
                "batch_id": None,
                "custom_id": None,
            }
        )
    return rows


async def old_insert(session: Any, rows: list[dict[str, Any]]) -> None:
    """``insert_usage`` as it was before the roll-ups."""
    dialect = session.bind.dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(UsageRecord).on_conflict_do_nothing(index_elements=["request_id"])
    await session.execute(stmt, rows)


async def measure(urls: dict[str, str], batches: int, one_key: bool) -> dict[str, list[float]]:
    engines = {name: db.create_engine(url) for name, url in urls.items()}
    makers = {name: db.sessionmaker(e) for name, e in engines.items()}
    fns = {"before": old_insert, "after": repo.insert_usage}
    times: dict[str, list[float]] = {name: [] for name in urls}
    cpu: dict[str, list[float]] = {name: [] for name in urls}
    rnd = random.Random(5)
    at = datetime(2026, 12, 6, 9, tzinfo=UTC)
    try:
        for i in range(batches + 5):
            rows = batch(rnd, BATCH, at + timedelta(seconds=i / 2), one_key=one_key)
            order = ["before", "after"] if i % 2 else ["after", "before"]
            for name in order:
                t0, c0 = time.perf_counter(), time.process_time()
                async with makers[name]() as session, session.begin():
                    await fns[name](session, rows)
                if i >= 5:  # warm-up: connections, compiled statements
                    times[name].append((time.perf_counter() - t0) * 1000)
                    cpu[name].append((time.process_time() - c0) * 1000)
    finally:
        for e in engines.values():
            await e.dispose()
    return {**times, "cpu before": cpu["before"], "cpu after": cpu["after"]}


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def report(kind: str, times: dict[str, list[float]]) -> None:
    b, a = times["before"], times["after"]
    print(
        f"{kind:10s}  before p50 {statistics.median(b):6.2f} ms  mean {statistics.fmean(b):6.2f}"
        f"  |  after p50 {statistics.median(a):6.2f} ms  mean {statistics.fmean(a):6.2f}"
        f"  |  ratio p50 {statistics.median(a) / statistics.median(b):.2f}"
        f"  per row after {statistics.median(a) / BATCH * 1000:.0f} µs",
        flush=True,
    )
    cb, ca = times["cpu before"], times["cpu after"]
    print(
        f"{'':10s}  this process's CPU per flush (driver and SQLite threads included): before "
        f"{statistics.fmean(cb):6.2f} ms  after {statistics.fmean(ca):6.2f} ms  "
        f"ratio {statistics.fmean(ca) / statistics.fmean(cb):.2f}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument(
        "--one-key",
        action="store_true",
        help="every row of one key, model and region (gateway_overhead's traffic)",
    )
    args = ap.parse_args()
    print(
        f"# {datetime.now(UTC):%Y-%m-%dT%H:%M:%S}  cpus={os.cpu_count()}  load1 "
        f"{os.getloadavg()[0]:.2f}  {args.batches} flushes of {BATCH} rows each way"
    )
    folder = tempfile.mkdtemp(prefix="mg-flush-")
    urls = {n: f"sqlite+aiosqlite:///{folder}/{n}.db" for n in ("before", "after")}
    for url in urls.values():
        migrate.upgrade(url)
    report("sqlite", asyncio.run(measure(urls, args.batches, args.one_key)))
    if args.postgres:
        names = {n: f"mg_flush_{n}_{secrets.token_hex(3)}" for n in ("before", "after")}
        for name in names.values():
            pg_admin(f'CREATE DATABASE "{name}"')
        try:
            urls = {
                n: f"postgresql+asyncpg://postgres@127.0.0.1:5432/{d}" for n, d in names.items()
            }
            for url in urls.values():
                migrate.upgrade(url)
            report("postgresql", asyncio.run(measure(urls, args.batches, args.one_key)))
        finally:
            for name in names.values():
                pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
