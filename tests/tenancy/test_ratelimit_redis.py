"""The Redis backend against the real Redis at 127.0.0.1:6379: same rules as in-process,
and exact limits shared by 4 gateway processes."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from modelgrid.core.errors import QuotaExceededError, RateLimitError
from modelgrid.tenancy.limits import ScopeLimits
from modelgrid.tenancy.ratelimit import month_key
from modelgrid.tenancy.ratelimit_redis import RedisLimiter
from tests import fake_gateway
from tests.support import ProcessServer, create_key

pytestmark = pytest.mark.redis
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
async def limiter() -> AsyncIterator[RedisLimiter]:
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.ping()  # no Redis: the test fails (never skips)
    lim = RedisLimiter(client)
    yield lim
    await lim.aclose()


def scope(level: str = "ws") -> str:
    return f"{level}:t{secrets.token_hex(4)}"


async def test_rpm_and_headers(limiter: RedisLimiter) -> None:
    limits = (ScopeLimits(scope(), rpm=2),)
    a = await limiter.acquire("a", limits, 5)
    assert a.headers()["x-ratelimit-remaining-requests"] == "1"
    await limiter.acquire("b", limits, 5)
    with pytest.raises(RateLimitError) as exc:
        await limiter.acquire("c", limits, 5)
    assert 29 < exc.value.retry_after_s <= 30.5
    assert exc.value.headers["x-ratelimit-limit-requests"] == "2"


async def test_tpm_reconcile_and_concurrency(limiter: RedisLimiter) -> None:
    limits = (ScopeLimits(scope("key"), tpm=1000, concurrency=1),)
    adm = await limiter.acquire("a", limits, 800)
    with pytest.raises(RateLimitError) as exc:
        await limiter.acquire("b", limits, 100)
    assert exc.value.code == "concurrency_limit_exceeded"
    await limiter.settle(adm, 100, 0)
    adm2 = await limiter.acquire("b", limits, 300)
    assert adm2.headers()["x-ratelimit-remaining-tokens"] == "600"


async def test_all_levels_or_none(limiter: RedisLimiter) -> None:
    ws, key = ScopeLimits(scope(), rpm=10), ScopeLimits(scope("key"), rpm=1)
    await limiter.acquire("a", (ws, key), 1)
    with pytest.raises(RateLimitError):
        await limiter.acquire("b", (ws, key), 1)
    adm = await limiter.acquire("c", (ws, ScopeLimits(scope("key"), rpm=5)), 1)
    assert adm.headers()["x-ratelimit-remaining-requests"] == "4"  # key level (5-1) < ws (10-2)


async def test_budget_seeded_once_and_enforced(limiter: RedisLimiter) -> None:
    calls = []

    async def seed(s: str, month: str) -> tuple[int, int]:
        calls.append(s)
        return 900, 0

    limiter._seed = seed
    limits = (ScopeLimits(scope(), monthly_budget_micros=1000),)
    adm = await limiter.acquire("a", limits, 1)
    await limiter.settle(adm, 1, 100)
    with pytest.raises(QuotaExceededError):
        await limiter.acquire("b", limits, 1)
    assert len(calls) == 1


@pytest.mark.e2e
def test_four_processes_share_the_limit_exactly(tmp_path: Path) -> None:
    """4 gateway processes, one Redis: admitted requests never exceed the bucket's allowance
    (limit + refill over the test's duration) by more than 1%."""
    rpm = 300
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'mg.db'}"
    key = create_key(db_url, name="limited", workspace=f"rl-{secrets.token_hex(3)}")
    con = sqlite3.connect(tmp_path / "mg.db")
    con.execute("UPDATE api_keys SET rpm_limit = ? WHERE id = ?", (rpm, key.key_id))
    con.commit()
    con.close()
    env = {
        "MODELGRID_DATABASE__URL": db_url,
        "MODELGRID_DATA_DIR": str(tmp_path),
        "MODELGRID_ENGINE__MODELS": '["fake-model"]',
        "MODELGRID_RATELIMIT__BACKEND": "redis",
        "MODELGRID_RATELIMIT__REDIS_URL": REDIS_URL,
        "MODELGRID_BOOTSTRAP_KEYS": "false",
        "MODELGRID_SERVER__LOG_LEVEL": "warning",
    }
    servers = [
        ProcessServer(
            env=env, log_path=tmp_path / f"s{i}.log", command=fake_gateway.command()
        ).start(60)
        for i in range(4)
    ]
    counts = {200: 0, 429: 0, "other": 0}
    lock = threading.Lock()
    duration_s = 4.0
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    headers = {"Authorization": f"Bearer {key.plaintext}"}
    start = time.monotonic()

    def busy() -> bool:  # at least 4 s and 3x the limit in requests (a slow machine: longer)
        elapsed = time.monotonic() - start
        with lock:
            total = sum(counts.values())
        return elapsed < 30 and (elapsed < duration_s or total < 3 * rpm)

    def hammer(i: int) -> None:
        with httpx.Client(timeout=10) as c:
            n = 0
            while busy():
                r = c.post(
                    f"{servers[(i + n) % 4].base_url}/v1/chat/completions",
                    json=body,
                    headers=headers,
                )
                n += 1
                with lock:
                    counts[r.status_code if r.status_code in (200, 429) else "other"] += 1

    try:
        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
    finally:
        for s in servers:
            s.stop()
    allowed = rpm + rpm / 60 * elapsed
    print(f"admitted {counts[200]}, refused {counts[429]}, allowed {allowed:.0f} in {elapsed:.1f}s")
    assert counts["other"] == 0
    assert counts[429] > counts[200]  # the load really exceeded the limit
    assert counts[200] <= allowed * 1.01
    assert counts[200] >= rpm  # and the limit was really usable
    assert os.path.exists(tmp_path / "mg.db")


async def test_zero_limit_refuses_clearly(limiter: RedisLimiter) -> None:
    with pytest.raises(RateLimitError) as exc:
        await limiter.acquire("a", (ScopeLimits(scope(), rpm=0),), 1)
    assert exc.value.code == "limit_is_zero"


async def test_sixteen_at_once_against_a_nearly_spent_budget(limiter: RedisLimiter) -> None:
    async def seed(_scope: str, _month: str) -> tuple[int, int]:
        return 900, 900

    limiter._seed = seed
    limits = (ScopeLimits(scope(), monthly_budget_micros=1000, monthly_token_budget=1000),)
    results = await asyncio.gather(
        *(limiter.acquire(f"r{i}", limits, 60, 60) for i in range(16)), return_exceptions=True
    )
    admitted = [r for r in results if not isinstance(r, BaseException)]
    assert len(admitted) == 2
    assert sum(isinstance(r, QuotaExceededError) for r in results) == 14
    first, second = admitted
    await limiter.settle(first, actual_tokens=10, cost_micros=10)  # 910 spent, 60 reserved
    await limiter.acquire("after", limits, 10, 10)  # 910 + 60 + 0 < 1000
    await limiter.settle(second, actual_tokens=60, cost_micros=60)
    spend = await limiter._redis.get(f"mg:rl:{{{limits[0].scope}}}:spend:{first.month}")
    assert int(spend) == 970


async def test_a_crashed_gateways_reservations_expire(limiter: RedisLimiter) -> None:
    limits = (ScopeLimits(scope(), monthly_token_budget=100),)
    key = f"mg:rl:{{{limits[0].scope}}}:reserved:{month_key()}"
    stale = time.time() - 3600  # left by a gateway that died an hour ago
    await limiter._redis.hset(key, "dead", f"0:100:{stale:.6f}")
    await limiter.acquire("live", limits, 10)  # the stale 100 tokens no longer count
    assert await limiter._redis.hexists(key, "dead") == 0
