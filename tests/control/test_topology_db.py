"""The topology in the database (``control.topology_db``): seeded once, whoever starts
first; a stored document that is not a valid topology is ignored (the live one stays) until a
valid one replaces it; two writers that read the same version both keep their change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelgrid.control.topology_db import DatabaseTopology, StoredTopology, load_or_seed
from modelgrid.routing import Grid
from modelgrid.routing import topology as topo
from modelgrid.routing.topology import Region
from modelgrid.storage import control_state as cs
from modelgrid.storage import db
from tests.databases import migrated_sqlite


@pytest.fixture
def url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path / "mg.db")


@pytest.fixture
async def sessions(url: str) -> AsyncIterator[Any]:
    engine = db.create_engine(url)
    yield db.sessionmaker(engine)
    await engine.dispose()


def with_region(t: topo.Topology, region: str) -> topo.Topology:
    return t.with_region(Region(region))


async def test_seeded_once(sessions: Any) -> None:
    first = with_region(topo.default_topology(), "eu-west-1")
    assert await load_or_seed(sessions, first) == (1, first)
    other = with_region(topo.default_topology(), "us-east-1")
    version, stored = await load_or_seed(sessions, other)  # a second gateway: the stored one
    assert (version, [r.id for r in stored.regions]) == (1, ["local", "eu-west-1"])


async def test_an_invalid_document_is_ignored_until_a_valid_one(
    sessions: Any, caplog: pytest.LogCaptureFixture
) -> None:
    version, stored = await load_or_seed(sessions, topo.default_topology())
    grid = Grid(stored, probe_interval_s=3600)
    live = DatabaseTopology(grid, sessions, version)
    async with sessions() as s, s.begin():
        await cs.save_topology_document(s, "regions = 3", expected_version=version)
    assert not await live.reload_if_changed()
    assert grid.topology == stored
    assert not await live.reload_if_changed()  # still ignored, logged once
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "not valid" in errors[0]
    valid = with_region(topo.default_topology(), "eu-west-1")
    async with sessions() as s, s.begin():
        await cs.save_topology_document(s, topo.dumps(valid), expected_version=version + 1)
    assert await live.reload_if_changed()
    assert grid.topology.region("eu-west-1") is not None
    assert live.version == version + 2
    assert not await live.reload_if_changed()  # nothing newer
    await grid.aclose()


async def test_two_writers_of_one_version_both_keep_their_change(sessions: Any) -> None:
    base = topo.default_topology()
    await load_or_seed(sessions, base)
    a = await StoredTopology.open(sessions, base, ())
    b = await StoredTopology.open(sessions, base, ())  # both read version 1
    await a.change(lambda t: with_region(t, "eu-west-1"))
    await b.change(lambda t: with_region(t, "us-east-1"))  # lost the race: re-read, re-applied
    version, stored = await load_or_seed(sessions, base)
    assert stored is not None and version == 3
    assert [r.id for r in stored.regions] == ["local", "eu-west-1", "us-east-1"]
