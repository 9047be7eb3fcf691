"""Refresh-ahead of cached principals: keys in use never wait for the database, yet a change
made elsewhere (another machine: no epoch file) shows within the cache's lifetime, and a
refresh racing with a clear never brings a revoked key back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from modelgrid.core.errors import AuthenticationError
from modelgrid.storage import db, migrate
from modelgrid.storage import repositories as repo
from modelgrid.tenancy.authcache import PrincipalCache
from modelgrid.tenancy.service import TenancyService
from tests.clock import Clock
from tests.support import create_key_async


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[TenancyService, Clock, Any, list[str]]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mg.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    engine = db.create_engine(url)
    clock = Clock()
    service = TenancyService(
        db.sessionmaker(engine), auth_cache=PrincipalCache(2.0, clock=clock, keep_s=300)
    )
    reads: list[str] = []
    real = repo.get_api_key_with_workspace

    async def counted(session: Any, key_id: str) -> Any:
        reads.append(key_id)
        return await real(session, key_id)

    repo.get_api_key_with_workspace = counted  # type: ignore[assignment]
    try:
        yield service, clock, engine, reads
    finally:
        repo.get_api_key_with_workspace = real  # type: ignore[assignment]
        await engine.dispose()


async def test_a_key_in_use_is_refreshed_before_it_expires(setup: Any) -> None:
    service, clock, engine, reads = setup
    key = await create_key_async(db.sessionmaker(engine), name="k")
    await service.authenticate(key.plaintext)
    assert reads == [key.key_id]
    for _ in range(20):  # 20 s of sparse traffic, refreshed every ttl / 2 as the app does
        clock.now += 1.0
        await service.refresh_principals()
        await service.authenticate(key.plaintext)
    assert reads == [key.key_id]  # no request waited for the database after the first


async def test_a_revocation_elsewhere_shows_within_the_ttl(setup: Any) -> None:
    service, clock, engine, _ = setup
    key = await create_key_async(db.sessionmaker(engine), name="k")
    await service.authenticate(key.plaintext)
    async with engine.begin() as conn:  # another machine revokes it: no epoch bump here
        await conn.execute(
            text("UPDATE api_keys SET revoked_at = :t WHERE id = :id"),
            {"t": datetime.now(UTC), "id": key.key_id},
        )
    clock.now += 1.5  # past half its life: the next refresh round re-reads it
    assert await service.refresh_principals() == 0  # dropped, not refreshed
    with pytest.raises(AuthenticationError) as info:
        await service.authenticate(key.plaintext)
    assert info.value.code == "revoked_api_key"


async def test_unused_keys_are_not_refreshed_and_leave_the_cache(setup: Any) -> None:
    service, clock, engine, reads = setup
    key = await create_key_async(db.sessionmaker(engine), name="k")
    await service.authenticate(key.plaintext)
    clock.now += 301
    assert await service.refresh_principals() == 0
    await service.authenticate(key.plaintext)
    assert reads == [key.key_id, key.key_id]


async def test_a_refresh_racing_with_a_clear_is_dropped(setup: Any) -> None:
    service, clock, engine, reads = setup
    key = await create_key_async(db.sessionmaker(engine), name="k")
    await service.authenticate(key.plaintext)
    cache = service.auth_cache
    clock.now += 1.5
    [(key_hash, key_id)] = cache.due()
    stale = cache.generation
    cache.clear()  # e.g. the key was revoked here while the refresh query ran
    principal = await service.authenticate(key.plaintext)  # re-read after the clear
    cache.put(key_hash, "0" * 64, (principal, None), key_id, stale)  # the late refresh
    assert cache.get(key_hash) is not None and cache.get(key_hash)[0] != "0" * 64  # type: ignore[index]
    assert reads == [key.key_id, key.key_id]


async def test_an_authentication_racing_with_a_clear_is_not_cached(setup: Any) -> None:
    service, _clock, engine, reads = setup
    key = await create_key_async(db.sessionmaker(engine), name="k")
    real = repo.get_api_key_with_workspace

    async def cleared_meanwhile(session: Any, key_id: str) -> Any:
        found = await real(session, key_id)  # read before the key's revocation committed...
        service.auth_cache.clear()  # ...which another gateway's change feed reports now
        return found

    repo.get_api_key_with_workspace = cleared_meanwhile  # type: ignore[assignment]
    await service.authenticate(key.plaintext)  # answered from what it read, not cached
    repo.get_api_key_with_workspace = real  # type: ignore[assignment]
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE api_keys SET revoked_at = :t WHERE id = :id"),
            {"t": datetime.now(UTC), "id": key.key_id},
        )
    with pytest.raises(AuthenticationError) as info:
        await service.authenticate(key.plaintext)  # read again: no stale principal
    assert info.value.code == "revoked_api_key"
    assert reads == [key.key_id, key.key_id]


async def test_a_change_elsewhere_rereads_every_cached_key_at_once(setup: Any) -> None:
    service, _clock, engine, reads = setup
    sessions = db.sessionmaker(engine)
    kept = await create_key_async(sessions, name="kept")
    gone = await create_key_async(sessions, name="gone")
    await service.authenticate(kept.plaintext)
    await service.authenticate(gone.plaintext)
    async with engine.begin() as conn:  # another gateway's changes: no epoch bump here
        await conn.execute(
            text("UPDATE api_keys SET revoked_at = :t WHERE id = :id"),
            {"t": datetime.now(UTC), "id": gone.key_id},
        )
        await conn.execute(
            text("UPDATE api_keys SET rpm_limit = 7 WHERE id = :id"), {"id": kept.key_id}
        )
    assert await service.reread_principals() == 1  # its change counter moved: one query
    principal = await service.authenticate(kept.plaintext)  # from the cache, already new
    assert [lim.rpm for lim in principal.limits if lim.scope.startswith("key:")] == [7]
    assert reads == [kept.key_id, gone.key_id]  # no request waited for the database
    with pytest.raises(AuthenticationError) as info:
        await service.authenticate(gone.plaintext)
    assert info.value.code == "revoked_api_key"
