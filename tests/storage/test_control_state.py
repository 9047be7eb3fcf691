"""The change counters (``storage.control_state``) on SQLite and PostgreSQL: a bump counts
in the change's transaction (a rolled-back change counts nothing), the topology document is
written only over the version it was read at, and on PostgreSQL a bump reaches a listener
when its transaction commits, not before."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelgrid.storage import control_state as cs
from modelgrid.storage import db
from tests.databases import BOTH_DATABASES


async def _with(url: str) -> Any:
    engine = db.create_engine(url)
    return engine, db.sessionmaker(engine)


@BOTH_DATABASES
async def test_bump_counts_in_the_transaction(database_url: str) -> None:
    engine, sessions = await _with(database_url)
    try:
        async with sessions() as s:
            assert await cs.versions(s) == {"principals": 0, "prices": 0, "topology": 0}
        async with sessions() as s, s.begin():
            await cs.bump(s, cs.PRINCIPALS)
            await cs.bump(s, cs.PRINCIPALS, cs.PRICES)
        with pytest.raises(RuntimeError):
            async with sessions() as s, s.begin():
                await cs.bump(s, cs.PRICES)
                raise RuntimeError("the change failed")
        async with sessions() as s:
            assert await cs.versions(s) == {"principals": 2, "prices": 1, "topology": 0}
    finally:
        await engine.dispose()


@BOTH_DATABASES
async def test_topology_document_is_optimistic(database_url: str) -> None:
    engine, sessions = await _with(database_url)
    try:
        async with sessions() as s:
            assert await cs.topology_document(s) == (0, None)
        async with sessions() as s, s.begin():
            assert await cs.save_topology_document(s, "a", expected_version=None) == 1
        async with sessions() as s, s.begin():  # a second seed loses: one is stored
            assert await cs.save_topology_document(s, "b", expected_version=None) is None
        async with sessions() as s, s.begin():
            assert await cs.save_topology_document(s, "c", expected_version=1) == 2
        async with sessions() as s, s.begin():  # written over a version read before "c"
            assert await cs.save_topology_document(s, "d", expected_version=1) is None
        async with sessions() as s:
            assert await cs.topology_document(s) == (2, "c")
            assert await cs.topology_version(s) == 2
    finally:
        await engine.dispose()


async def test_sqlite_has_no_listener(tmp_path: Any) -> None:
    assert await cs.Listener.open(f"sqlite+aiosqlite:///{tmp_path}/x.db", print) is None


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_listener_hears_a_bump_when_it_commits(database_url: str) -> None:
    url = database_url
    engine, sessions = await _with(url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await cs.Listener.open(url, heard.put_nowait)
    assert listener is not None and listener.alive
    try:
        async with sessions() as s, s.begin():
            await cs.bump(s, cs.PRICES)
            await asyncio.sleep(0.2)  # give a premature notification time to arrive
            assert heard.empty()  # not before the commit
        assert await asyncio.wait_for(heard.get(), 5) == "prices"
        async with sessions() as s, s.begin():
            await cs.save_topology_document(s, "x", expected_version=None)
        assert await asyncio.wait_for(heard.get(), 5) == "topology"
    finally:
        await listener.aclose()
        await engine.dispose()
    assert not listener.alive
