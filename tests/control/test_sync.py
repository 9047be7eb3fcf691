"""``ChangeFollower``: a counter that moves runs its handler once (again next round if it
failed); a change made between ``open`` and the first round is not missed; on PostgreSQL a
NOTIFY wakes it long before its poll, and a killed LISTEN connection is reopened while the
poll carries on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelgrid.control import sync
from modelgrid.control.sync import ChangeFollower
from modelgrid.storage import control_state as cs
from modelgrid.storage import db
from tests.databases import migrated_sqlite, postgres_database
from tests.support import db_execute


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path / "mg.db")


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
async def sqlite_sessions(sqlite_url: str) -> AsyncIterator[Any]:
    engine = db.create_engine(sqlite_url)
    yield db.sessionmaker(engine)
    await engine.dispose()


async def bump(sessions: Any, *topics: str) -> None:
    async with sessions() as s, s.begin():
        await cs.bump(s, *topics)


async def test_handlers_run_once_per_change_and_retry_after_failing(sqlite_sessions: Any) -> None:
    calls: list[str] = []
    fail = [True]

    async def prices() -> None:
        calls.append("prices")
        if fail[0]:
            fail[0] = False
            raise RuntimeError("database away")

    async def principals() -> None:
        calls.append("principals")

    f = ChangeFollower(sqlite_sessions, {cs.PRICES: prices, cs.PRINCIPALS: principals})
    await f.open()
    await bump(sqlite_sessions, cs.PRICES)  # after open: not missed
    assert await f.follow_once() == []  # the prices handler failed: not remembered
    assert await f.follow_once() == ["prices"]
    assert await f.follow_once() == []
    await bump(sqlite_sessions, cs.PRINCIPALS, cs.TOPOLOGY)  # no topology handler: ignored
    assert await f.follow_once() == ["principals"]
    assert calls == ["prices", "prices", "principals"]


async def test_run_polls_and_stop_waits_for_the_round(sqlite_sessions: Any) -> None:
    seen = asyncio.Event()
    in_round = asyncio.Event()
    release = asyncio.Event()

    async def principals() -> None:
        in_round.set()
        await release.wait()  # a round still running when stop is asked
        seen.set()

    f = ChangeFollower(sqlite_sessions, {cs.PRINCIPALS: principals}, poll_interval_s=0.05)
    await f.open()
    f.start()
    await bump(sqlite_sessions, cs.PRINCIPALS)
    await asyncio.wait_for(in_round.wait(), 5)
    stopping = asyncio.create_task(f.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # waits for the round, does not cancel it
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert seen.is_set()


@pytest.mark.postgres
async def test_notify_wakes_it_and_a_killed_listener_is_reopened(
    monkeypatch: Any, pg_url: str
) -> None:
    monkeypatch.setattr(sync, "RELISTEN_S", 0.2)
    url = pg_url
    engine = db.create_engine(url)
    sessions = db.sessionmaker(engine)
    changed: asyncio.Queue[float] = asyncio.Queue()

    async def prices() -> None:
        changed.put_nowait(time.monotonic())

    f = ChangeFollower(sessions, {cs.PRICES: prices}, url=url, poll_interval_s=30)
    await f.open()
    assert f.listening and f.listens == 1
    f.start()
    try:
        sent = time.monotonic()
        await bump(sessions, cs.PRICES)
        at = await asyncio.wait_for(changed.get(), 5)
        assert at - sent < 0.5  # the NOTIFY, not the 30 s poll

        await asyncio.to_thread(
            db_execute,
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        deadline = time.monotonic() + 5
        while not (f.listens == 2 and f.listening):
            assert time.monotonic() < deadline, "the LISTEN connection was not reopened"
            await asyncio.sleep(0.01)
        sent = time.monotonic()
        await bump(sessions, cs.PRICES)
        at = await asyncio.wait_for(changed.get(), 5)
        assert at - sent < 0.5  # notified again on the new connection
    finally:
        await f.stop()
        await engine.dispose()
