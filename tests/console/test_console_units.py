"""The console's parts without a server: the sign-in throttle, CSRF tokens, access rules, the
audit entries' workspace, migration 0012's backfill, the principal lookup by hash."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelgrid.console.access import Viewer, access_of
from modelgrid.console.security import SignInThrottle, csrf_token, same_token, session_hash
from modelgrid.core.errors import AuthenticationError, NotFoundError
from modelgrid.storage import db, migrate
from modelgrid.storage.models import ApiKey
from modelgrid.tenancy.audit import workspace_of
from modelgrid.tenancy.authcache import PrincipalCache
from modelgrid.tenancy.keys import hash_key
from modelgrid.tenancy.service import Principal, TenancyService
from tests.support import create_key_async, sync_url


def test_throttle_counts_failures_in_a_sliding_minute() -> None:
    now = [1000.0]
    throttle = SignInThrottle(3, 60.0, clock=lambda: now[0])
    for t in (0.0, 10.0, 20.0):
        now[0] = 1000.0 + t
        assert throttle.retry_after_s("1.2.3.4") is None
        throttle.failed("1.2.3.4")
    assert throttle.retry_after_s("1.2.3.4") == 40.0  # the first failure leaves at 1060
    assert throttle.retry_after_s("5.6.7.8") is None  # per address
    now[0] = 1060.0
    assert throttle.retry_after_s("1.2.3.4") is None
    throttle.failed("1.2.3.4")
    assert throttle.retry_after_s("1.2.3.4") == 10.0  # 1010 + 60 - 1060


def test_throttle_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelgrid.console.security.MAX_ADDRESSES", 3)
    throttle = SignInThrottle(1, 60.0, clock=lambda: 5.0)
    for a in ("a", "b", "c", "d"):
        throttle.failed(a)
    assert throttle.retry_after_s("a") is None  # forgotten first
    assert throttle.retry_after_s("d") == 60.0


def test_csrf_tokens() -> None:
    token = csrf_token("session-one")
    assert len(token) == 64 and token == csrf_token("session-one")
    assert token != csrf_token("session-two")
    assert same_token(token, token)
    assert not same_token(None, token) and not same_token("", token)
    assert not same_token(token[:-1] + "0" if token[-1] != "0" else token[:-1] + "1", token)
    assert session_hash("x") == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def _key(**fields: object) -> ApiKey:
    base: dict[str, object] = {
        "role": "tenant",
        "allowed_models": None,
        "allowed_regions": None,
        "allowed_jurisdictions": None,
    }
    return ApiKey(**(base | fields))


def test_access_of_a_key() -> None:
    assert access_of(_key(role="admin", allowed_models=["m"])) == "operator"
    assert access_of(_key()) == "member"
    assert access_of(_key(allowed_models=["m"])) == "key"
    assert access_of(_key(allowed_regions=[])) == "key"
    assert access_of(_key(allowed_jurisdictions=["EU"])) == "key"


def test_viewer_scope_rules() -> None:
    p = Principal(key_id="k1", workspace_id="ws_a", role="tenant", name="")
    member = Viewer(p, "member", "mg-k1", "t")
    holder = Viewer(p, "key", "mg-k1", "t")
    operator = Viewer(p, "operator", "mg-k1", "t")
    assert member.workspace_scope() == "ws_a" and operator.workspace_scope() is None
    member.check_key("k2", "ws_a")
    with pytest.raises(NotFoundError):
        member.check_key("k2", "ws_b")
    holder.check_key("k1", "ws_a")
    with pytest.raises(NotFoundError):
        holder.check_key("k2", "ws_a")
    operator.check_key("k9", "ws_z")


def test_audit_entries_name_their_workspace() -> None:
    assert workspace_of("api_key:abc", {"workspace_id": "ws_1", "name": "x"}) == "ws_1"
    assert workspace_of("workspace:ws_2", {"limits": {}}) == "ws_2"
    assert workspace_of("workspace:ws_3", None) == "ws_3"
    assert workspace_of("price:7", {"model": "m"}) is None


def test_migration_0012_fills_in_audit_workspaces(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mg.db'}"
    migrate.upgrade(url, "0011")
    engine = sa.create_engine(sync_url(url))
    with engine.begin() as conn:
        for target, details in [
            ("api_key:k1", {"workspace_id": "ws_1"}),
            ("workspace:ws_2", {"name": "two"}),
            ("price:1", {"model": "m"}),
            ("api_key:k3", None),
        ]:
            conn.execute(
                sa.text(
                    "INSERT INTO audit_log (at, actor, action, target, details)"
                    " VALUES ('2026-01-01 00:00:00', 'cli:t', 'x', :t, :d)"
                ),
                {"t": target, "d": None if details is None else json.dumps(details)},
            )
    migrate.upgrade(url, "head")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT target, workspace_id FROM audit_log ORDER BY id"))
        assert [tuple(r) for r in rows] == [
            ("api_key:k1", "ws_1"),
            ("workspace:ws_2", "ws_2"),
            ("price:1", None),
            ("api_key:k3", None),
        ]
    engine.dispose()


def test_principal_of_hash(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mg.db'}"
    migrate.upgrade(url)

    async def go() -> None:
        engine = db.create_engine(url)
        sessions = db.sessionmaker(engine)
        try:
            key = await create_key_async(sessions, name="k", workspace="acme")
            cache: PrincipalCache[tuple[Principal, object]] = PrincipalCache(60.0)
            tenancy = TenancyService(sessions, auth_cache=cache)  # type: ignore[arg-type]
            stored = hash_key(key.plaintext)
            principal = await tenancy.principal_of_hash(key.key_id, stored)
            assert (principal.key_id, principal.workspace_id) == (key.key_id, key.workspace_id)
            assert cache.get(stored) is not None  # cached: the next load reads nothing
            with pytest.raises(AuthenticationError):
                await tenancy.principal_of_hash(key.key_id, "0" * 64)
            async with sessions() as s, s.begin():
                await s.execute(
                    sa.text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE id = :k"),
                    {"k": key.key_id},
                )
            cache.clear()  # what a revocation does (hooks, the epoch file, the follower)
            with pytest.raises(AuthenticationError, match="revoked"):
                await tenancy.principal_of_hash(key.key_id, stored)
        finally:
            await engine.dispose()

    asyncio.run(go())
