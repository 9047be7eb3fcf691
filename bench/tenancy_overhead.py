"""Tenancy hot-path costs, each next to a baseline measured in the same run.

1. Rate-limit check: µs per request for ``acquire`` + ``settle`` (RPM, TPM and concurrency
   limits at two levels, workspace and key), in-process and on Redis. Baselines: a bare
   dict increment (in-process) and a bare Redis ``INCR`` round trip (the least any shared
   limiter must pay).
2. Metering throughput: usage records/s durably written through ``UsageWriter`` (spool
   append + batched idempotent inserts) on SQLite and on PostgreSQL. Baseline: the same rows
   inserted with one plain ``INSERT ... VALUES`` batch per flush through the same SQLAlchemy
   engine, without spool or conflict handling.

Run: ``.venv/bin/python bench/tenancy_overhead.py [--requests 20000] [--records 20000]``
(needs Redis at 127.0.0.1:6379 and PostgreSQL at 127.0.0.1:5432, database ``test``).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis
from sqlalchemy import insert

from modelgrid.storage import db, migrate
from modelgrid.storage.models import UsageRecord
from modelgrid.tenancy.events import UsageEvent
from modelgrid.tenancy.limits import ScopeLimits
from modelgrid.tenancy.metering import UsageWriter
from modelgrid.tenancy.ratelimit import InProcessLimiter
from modelgrid.tenancy.ratelimit_redis import RedisLimiter
from modelgrid.tenancy.spool import Spool

REDIS_URL = "redis://127.0.0.1:6379/15"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def limits() -> tuple[ScopeLimits, ...]:
    tag = secrets.token_hex(4)
    big = 10**9
    return (
        ScopeLimits(f"ws:b{tag}", rpm=big, tpm=big, concurrency=big),
        ScopeLimits(f"key:b{tag}", rpm=big, tpm=big, concurrency=big),
    )


async def bench_limiter(name: str, limiter: object, n: int) -> float:
    lim = limits()
    t0 = time.perf_counter()
    for i in range(n):
        adm = await limiter.acquire(f"r{i}", lim, 100)  # type: ignore[attr-defined]
        await limiter.settle(adm, 90, 0)  # type: ignore[attr-defined]
    return (time.perf_counter() - t0) / n * 1e6


async def rate_limit_section(n: int) -> list[tuple[str, float, float]]:
    counters: dict[str, int] = {}
    t0 = time.perf_counter()
    for i in range(n):
        counters["k"] = counters.get("k", 0) + 1
        counters["k"] -= 1 if i < 0 else 0
    dict_us = (time.perf_counter() - t0) / n * 1e6
    mem_us = await bench_limiter("memory", InProcessLimiter(), n)
    client = aioredis.Redis.from_url(REDIS_URL)
    t0 = time.perf_counter()
    for _ in range(n // 4):
        await client.incr("mg:bench:incr")
    incr_us = (time.perf_counter() - t0) / (n // 4) * 1e6
    redis_us = await bench_limiter("redis", RedisLimiter(client), n // 4)
    await client.aclose()
    return [("in-process", mem_us, dict_us), ("redis", redis_us, incr_us)]


def event(i: int) -> UsageEvent:
    return UsageEvent(
        request_id=secrets.token_hex(16),
        client_request_id=None,
        api_key_id="k",
        workspace_id="w",
        model="m",
        endpoint="chat.completions",
        prompt_tokens=30,
        completion_tokens=i % 50,
        ttft_ms=12,
        total_ms=300,
        status=200,
        finish_reason="stop",
        created_at=datetime.now(UTC),
    )


async def metering(url: str, n: int, batch: int, tmp: Path) -> tuple[float, float]:
    engine = db.create_engine(url)
    sessions = db.sessionmaker(engine)
    writer = UsageWriter(sessions, batch_size=batch, spool=Spool(tmp / secrets.token_hex(3)))
    events = [event(i) for i in range(n)]
    t0 = time.perf_counter()
    for i, e in enumerate(events):
        writer.record(e)
        if (i + 1) % batch == 0:
            await writer.flush()
    await writer.aclose()
    ours = n / (time.perf_counter() - t0)
    rows = [asdict(event(i)) for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        async with sessions() as s, s.begin():
            await s.execute(insert(UsageRecord).values(rows[i : i + batch]))
    base = n / (time.perf_counter() - t0)
    await engine.dispose()
    return ours, base


async def metering_section(n: int, batch: int) -> list[tuple[str, float, float]]:
    import asyncpg

    out = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        await asyncio.to_thread(migrate.upgrade, url)
        out.append(("sqlite", *await metering(url, n, batch, tmp)))
        name = f"mg_bench_{secrets.token_hex(3)}"
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
            await asyncio.to_thread(migrate.upgrade, url)
            out.append(("postgresql", *await metering(url, n, batch, tmp)))
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()
    return out


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--records", type=int, default=20000)
    p.add_argument("--batch", type=int, default=256)
    a = p.parse_args()
    print("rate-limit check (acquire + settle, 2 levels x RPM/TPM/concurrency)")
    print(f"{'backend':<12}{'µs/request':>12}{'baseline µs':>14}{'ratio':>8}   baseline")
    for name, ours, base in await rate_limit_section(a.requests):
        what = "dict increment" if name == "in-process" else "Redis INCR round trip"
        print(f"{name:<12}{ours:>12.1f}{base:>14.2f}{ours / base:>8.1f}   {what}")
    print(f"\nmetering ({a.records} records, batches of {a.batch})")
    print(
        f"{'database':<12}{'records/s':>12}{'baseline/s':>14}{'ratio':>8}   baseline: plain batched INSERT"
    )
    for name, ours, base in await metering_section(a.records, a.batch):
        print(f"{name:<12}{ours:>12.0f}{base:>14.0f}{ours / base:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
