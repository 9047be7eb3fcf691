"""The Redis limiter on a Redis Cluster: every key one script touches must hash to one slot.

A real principal (a workspace and a key, both with limits, budgets included) is admitted and
settled against the real Redis; every key each script was given is hashed to its cluster slot
(CRC16/XMODEM of the hash tag, mod 16384: the Redis Cluster specification), and each script's
keys share one slot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from modelgrid.protocol.admin import KeyCreate, Limits, WorkspaceCreate
from modelgrid.storage import db
from modelgrid.tenancy.ratelimit_redis import RedisLimiter
from modelgrid.tenancy.service import TenancyService
from tests.databases import migrated_sqlite
from tests.support import control_plane

REDIS_URL = "redis://127.0.0.1:6379/15"


def crc16(data: bytes) -> int:
    """CRC16/XMODEM (polynomial 0x1021, initial 0), as Redis Cluster hashes keys."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: str) -> int:
    """The cluster slot of ``key``: only the part inside the first non-empty ``{…}``, if any,
    is hashed."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key.encode()) % 16384


def test_slots_match_the_specification() -> None:
    assert crc16(b"123456789") == 0x31C3  # the specification's check value
    assert key_slot("foo") == 12182  # CLUSTER KEYSLOT foo
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("foo{}{bar}") == crc16(b"foo{}{bar}") % 16384  # an empty tag: whole key


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    yield migrated_sqlite(tmp_path / "mg.db")


@pytest.mark.redis
async def test_every_key_of_one_script_is_in_one_slot(url: str) -> None:
    engine = db.create_engine(url)
    sessions = db.sessionmaker(engine)
    plane = control_plane(sessions)
    ws = await plane.workspaces.create(
        WorkspaceCreate(name="acme", limits=Limits(rpm=100, monthly_budget_micros=10**9)),
        actor="test",
    )
    key = await plane.keys.create(
        ws.id,
        KeyCreate(limits=Limits(tpm=10_000, concurrency=4, monthly_token_budget=10**6)),
        actor="test",
    )
    principal = await TenancyService(sessions).authenticate(key.key)
    assert [lim.scope for lim in principal.limits] == [f"ws:{ws.id}", f"key:{key.id}"]

    client = aioredis.Redis.from_url(REDIS_URL)
    limiter = RedisLimiter(client)
    calls: list[tuple[str, list[str]]] = []
    for name in ("_acquire", "_settle"):
        script = getattr(limiter, name)

        async def recording(
            *, keys: list[str], args: list[Any], _s: Any = script, _n: str = name
        ) -> Any:
            calls.append((_n, list(keys)))
            return await _s(keys=keys, args=args)

        setattr(limiter, name, recording)
    try:
        admission = await limiter.acquire("req-1", principal.limits, 100, reserve_micros=5)
        await limiter.settle(admission, 80, 3)
    finally:
        await limiter.aclose()
        await engine.dispose()

    assert [name for name, _ in calls] == ["_acquire", "_settle"]
    for name, keys in calls:
        assert len(keys) == 12  # 6 per level, both levels
        assert any(f"key:{key.id}" in k for k in keys)
        slots = {key_slot(k) for k in keys}
        assert slots == {key_slot(f"{{ws:{ws.id}}}")}, (name, keys)
