"""Redis wake-ups of the change feed (``control.redis_feed``): a session's changed topics are
announced after its commit, never after a rollback; the announcer publishes them and a
follower subscribed on Redis wakes at once (its poll made 30 s long); a Redis that cannot be
reached costs a log line, never an error; ``redis_wakeup_url`` uses Redis only where no
``LISTEN`` wakes the gateways."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelgrid.config import Settings
from modelgrid.control.redis_feed import RedisAnnouncer
from modelgrid.control.sync import ChangeFollower, redis_wakeup_url
from modelgrid.storage import control_state as cs
from modelgrid.storage import db
from tests.databases import migrated_sqlite

REDIS_URL = "redis://127.0.0.1:6379/14"
NOBODY = "redis://127.0.0.1:9/0"  # the discard port: nothing answers


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path / "mg.db")


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[Any]:
    e = db.create_engine(sqlite_url)
    yield e
    await e.dispose()


async def test_topics_are_announced_after_commit_only(engine: Any) -> None:
    announced: list[tuple[str, ...]] = []
    sessions = db.sessionmaker(engine, announce=announced.append)
    async with sessions() as s, s.begin():
        await cs.bump(s, cs.PRICES, cs.PRINCIPALS)
        assert announced == []  # not before the commit
    assert announced == [(cs.PRICES, cs.PRINCIPALS)]
    with pytest.raises(RuntimeError):
        async with sessions() as s, s.begin():
            await cs.bump(s, cs.TOPOLOGY)
            raise RuntimeError("rolled back")
    async with sessions() as s, s.begin():
        await cs.versions(s)  # a transaction that changed nothing announces nothing
    assert announced == [(cs.PRICES, cs.PRINCIPALS)]
    async with db.sessionmaker(engine)() as s, s.begin():  # sessions without announce: none
        await cs.bump(s, cs.PRICES)
    assert announced == [(cs.PRICES, cs.PRINCIPALS)]


@pytest.mark.redis
async def test_a_published_change_wakes_the_follower_at_once(engine: Any) -> None:
    announcer = RedisAnnouncer(REDIS_URL)
    writer = db.sessionmaker(engine, announce=announcer)
    applied = asyncio.Event()

    async def prices() -> None:
        applied.set()

    f = ChangeFollower(
        db.sessionmaker(engine), {cs.PRICES: prices}, redis_url=REDIS_URL, poll_interval_s=30
    )
    await f.open()
    f.start()
    try:
        assert f.wakeups is not None
        await asyncio.wait_for(f.wakeups.subscribed.wait(), 10)
        await asyncio.sleep(0.1)  # the round the subscription's own wake-up asked for
        start = time.monotonic()
        async with writer() as s, s.begin():
            await cs.bump(s, cs.PRICES)
        await asyncio.wait_for(applied.wait(), 5)
        elapsed_ms = (time.monotonic() - start) * 1000
        print(f"REDIS_WAKEUP applied {elapsed_ms:.1f} ms after the commit")
        assert elapsed_ms < 1000  # the poll is 30 s: only the message explains it
        # the publish runs in an executor and counts once Redis answers, which can come after
        # the subscriber got the message and the change was applied
        for _ in range(200):  # 2 s at most
            if announcer.published >= 1:
                break
            await asyncio.sleep(0.01)
        assert announcer.published == 1 and f.wakeups.messages >= 1
    finally:
        await f.stop()
        announcer.close()
    assert f.wakeups is None


async def test_an_unreachable_redis_is_logged_never_raised(
    engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    announcer = RedisAnnouncer(NOBODY, in_thread=False)
    sessions = db.sessionmaker(engine, announce=announcer)
    with caplog.at_level(logging.WARNING, "modelgrid.control"):
        for _ in range(2):
            async with sessions() as s, s.begin():
                await cs.bump(s, cs.PRICES)
        f = ChangeFollower(db.sessionmaker(engine), {}, redis_url=NOBODY, poll_interval_s=0.05)
        await f.open()
        f.start()
        await asyncio.sleep(0.3)
        rounds = f.rounds
        await f.stop()
    announcer.close()
    assert announcer.published == 0
    assert rounds >= 2  # the poll carries on
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot publish a control-plane change" in m for m in messages) == 1  # once
    assert sum("Redis wake-ups lost" in m for m in messages) == 1


def test_redis_wakes_the_gateways_only_where_listen_does_not() -> None:
    def url(db_url: str, *, backend: str = "redis", **control: Any) -> str | None:
        s = Settings(
            database={"url": db_url},  # type: ignore[arg-type]
            ratelimit={"backend": backend, "redis_url": REDIS_URL},  # type: ignore[arg-type]
            control=control,  # type: ignore[arg-type]
        )
        return redis_wakeup_url(s)

    sqlite = "sqlite+aiosqlite:///x.db"
    pg = "postgresql+asyncpg://u@h/d"
    assert url(sqlite) == REDIS_URL
    assert url(pg, listen=False) == REDIS_URL
    assert url(pg) is None  # LISTEN/NOTIFY wakes them
    assert url(sqlite, backend="memory") is None  # no shared Redis
    assert url(sqlite, redis_wakeup=False) is None
