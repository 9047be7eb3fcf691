"""API-key management for the admin plane (the admin API and the CLI).

Keys are named by id or display prefix (``mg-<id>``). Each change runs in one transaction
with its audit entry, whose details never hold the plaintext or the hash. Scopes narrow from
the workspace to the key (a key's regions must lie within its workspace's). A revoked key
cannot be changed or rotated; revocation takes effect on the next request in every process,
since authentication reads the key row each time. The plaintext of a new key is returned
once (``CreatedKeyObject.key``) and never stored: only its SHA-256 is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.admin import (
    LIMIT_COLUMNS,
    CreatedKeyObject,
    KeyCreate,
    KeyObject,
    KeyPatch,
    KeyRotate,
)
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import ApiKey, Workspace
from modelgrid.tenancy import audit, keys
from modelgrid.tenancy.admin import (
    Changes,
    Sessions,
    dedupe,
    find_key,
    find_workspace,
    key_object,
    limit_columns,
    set_limits,
)
from modelgrid.tenancy.audit import aware

# --- keys ------------------------------------------------------------------------------------


def _expiry(at: datetime | None, in_s: int | None, now: datetime) -> datetime | None:
    expires = now + timedelta(seconds=in_s) if in_s is not None else at
    if expires is None:
        return None
    expires = aware(expires)
    if expires <= now:
        raise InvalidRequestError("expires_at must lie in the future.", param="expires_at")
    return expires


def _check_within(key_values: list[str] | None, ws: Workspace, field: str) -> None:
    """A key may narrow its workspace's ``field`` (``allowed_regions`` or
    ``allowed_jurisdictions``), never widen it. Raises ``InvalidRequestError``."""
    allowed = getattr(ws, field)
    if key_values is None or allowed is None:
        return
    outside = sorted(set(key_values) - set(allowed))
    if outside:
        what = field.removeprefix("allowed_").capitalize()
        raise InvalidRequestError(
            f"{what} {outside} are outside workspace {ws.id}'s {allowed}.", param=field
        )


def _key_details(k: ApiKey) -> dict[str, Any]:
    o = key_object(k)
    return o.model_dump(
        include={
            "name",
            "role",
            "workspace_id",
            "allowed_models",
            "allowed_regions",
            "allowed_jurisdictions",
            "expires_at",
        }
    ) | {"limits": set_limits(o.limits)}


async def create_key(
    sessions: Sessions, workspace: str, body: KeyCreate, *, actor: str
) -> CreatedKeyObject:
    """Create a key in ``workspace`` (id or name); its plaintext is returned once.

    Raises:
        NotFoundError: no such workspace.
        InvalidRequestError: regions outside the workspace's; expiry not in the future.
    """
    now = datetime.now(UTC)
    expires = _expiry(body.expires_at, body.expires_in_s, now)
    new = keys.generate_key()
    async with sessions() as session, session.begin():
        ws = await find_workspace(session, workspace)
        regions = dedupe(body.allowed_regions)
        _check_within(regions, ws, "allowed_regions")
        jurisdictions = dedupe(body.allowed_jurisdictions)
        _check_within(jurisdictions, ws, "allowed_jurisdictions")
        row = await repo.add_api_key(
            session,
            ApiKey(
                id=new.key_id,
                workspace_id=ws.id,
                name=body.name,
                role=body.role,
                prefix=new.prefix,
                secret_hash=new.secret_hash,
                allowed_models=dedupe(body.allowed_models),
                allowed_regions=regions,
                allowed_jurisdictions=jurisdictions,
                expires_at=expires,
                created_at=now,
                **limit_columns(body.limits),
            ),
        )
        await audit.record(
            session,
            actor=actor,
            action="key.create",
            target=f"api_key:{row.id}",
            details=_key_details(row),
        )
    return CreatedKeyObject(**key_object(row).model_dump(), key=new.plaintext)


async def list_keys(
    sessions: Sessions, *, workspace: str | None = None, include_revoked: bool = False
) -> list[KeyObject]:
    """Keys (never their secrets), optionally of one workspace (id or name)."""
    async with sessions() as session:
        ws_id = None if workspace is None else (await find_workspace(session, workspace)).id
        rows = await repo.list_api_keys(
            session, include_revoked=include_revoked, workspace_id=ws_id
        )
        return [key_object(k) for k in rows]


async def get_key(sessions: Sessions, ident: str) -> KeyObject:
    """The key with id or prefix ``ident``. Raises ``NotFoundError``."""
    async with sessions() as session:
        return key_object(await find_key(session, ident))


def _not_revoked(row: ApiKey) -> None:
    if row.revoked_at is not None:
        raise InvalidRequestError(
            f"API key {row.prefix} is revoked.", param="key_id", code="key_revoked"
        )


async def update_key(sessions: Sessions, ident: str, body: KeyPatch, *, actor: str) -> KeyObject:
    """Change a key's name, scopes, expiry or limits (only the fields ``body`` sets).

    Raises:
        NotFoundError: no such key.
        InvalidRequestError: the key is revoked; regions outside the workspace's.
    """
    fields = body.model_fields_set
    async with sessions() as session, session.begin():
        row = await find_key(session, ident)
        _not_revoked(row)
        ch = Changes(row)
        if "name" in fields:
            ch.set("name", "name", body.name or "")
        if "allowed_models" in fields:
            ch.set("allowed_models", "allowed_models", dedupe(body.allowed_models))
        if "allowed_regions" in fields:
            regions = dedupe(body.allowed_regions)
            ws = await find_workspace(session, row.workspace_id)
            _check_within(regions, ws, "allowed_regions")
            ch.set("allowed_regions", "allowed_regions", regions)
        if "allowed_jurisdictions" in fields:
            codes = dedupe(body.allowed_jurisdictions)
            _check_within(
                codes, await find_workspace(session, row.workspace_id), "allowed_jurisdictions"
            )
            ch.set("allowed_jurisdictions", "allowed_jurisdictions", codes)
        if "expires_at" in fields:
            ch.set("expires_at", "expires_at", _expiry(body.expires_at, None, datetime.now(UTC)))
        ch.limits(body.limits)
        if ch.done:
            await audit.record(
                session,
                actor=actor,
                action="key.update",
                target=f"api_key:{row.id}",
                details=ch.done,
            )
    return key_object(row)


async def revoke_key(sessions: Sessions, ident: str, *, actor: str) -> KeyObject:
    """Revoke a key now (idempotent: a revoked key is returned as it is, with no new entry).

    Raises:
        NotFoundError: no such key.
    """
    async with sessions() as session, session.begin():
        row = await find_key(session, ident)
        if row.revoked_at is None and await repo.revoke_api_key(session, row.id):
            await session.refresh(row)
            await audit.record(
                session,
                actor=actor,
                action="key.revoke",
                target=f"api_key:{row.id}",
                details={"workspace_id": row.workspace_id, "name": row.name},
            )
    return key_object(row)


async def rotate_key(
    sessions: Sessions, ident: str, body: KeyRotate | None = None, *, actor: str
) -> CreatedKeyObject:
    """Replace a key: a new key with the same workspace, name, role, scopes, limits and expiry
    (or the expiry in ``body``); the old key is revoked in the same transaction.

    Raises:
        NotFoundError: no such key.
        InvalidRequestError: the key is revoked already; expiry not in the future.
    """
    body = body or KeyRotate()
    now = datetime.now(UTC)
    new = keys.generate_key()
    async with sessions() as session, session.begin():
        old = await find_key(session, ident)
        _not_revoked(old)
        if body.expires_at is None and body.expires_in_s is None:
            expires = aware(old.expires_at) if old.expires_at else None
        else:
            expires = _expiry(body.expires_at, body.expires_in_s, now)
        if not await repo.revoke_api_key(session, old.id):  # revoked meanwhile by another call
            raise InvalidRequestError(
                f"API key {old.prefix} is revoked.", param="key_id", code="key_revoked"
            )
        row = await repo.add_api_key(
            session,
            ApiKey(
                id=new.key_id,
                workspace_id=old.workspace_id,
                name=old.name,
                role=old.role,
                prefix=new.prefix,
                secret_hash=new.secret_hash,
                allowed_models=old.allowed_models,
                allowed_regions=old.allowed_regions,
                allowed_jurisdictions=old.allowed_jurisdictions,
                expires_at=expires,
                created_at=now,
                **{col: getattr(old, col) for col in LIMIT_COLUMNS.values()},
            ),
        )
        await audit.record(
            session,
            actor=actor,
            action="key.rotate",
            target=f"api_key:{old.id}",
            details={"new_key_id": row.id, "workspace_id": row.workspace_id, "expires_at": expires},
        )
    return CreatedKeyObject(**key_object(row).model_dump(), key=new.plaintext)


__all__ = ["create_key", "get_key", "list_keys", "revoke_key", "rotate_key", "update_key"]
