"""API keys: create, list, show, change, revoke, rotate, and the first keys of a new install.

Keys are named by id or display prefix (``mg-<id>``). Each change runs in one transaction
with its audit entry, whose details never hold the plaintext or the hash. Scopes narrow from
the workspace to the key (a key's regions must lie within its workspace's) and name what
exists (``control.inventory``: models served, regions and jurisdictions of the topology).
A revoked key cannot be changed or rotated. After a change the ``principals_changed`` hook
drops cached principals in this process and, through the epoch file, in every process on
this machine; other machines' caches expire within ``auth.cache_ttl_s``. The plaintext of a
new key is returned once (``CreatedKeyObject.key``) and never stored: only its SHA-256 is.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from modelgrid.control.area import Area
from modelgrid.control.changes import Changes, dedupe, limit_columns, limits_of, set_limits
from modelgrid.control.hooks import Hooks
from modelgrid.control.inventory import Inventory
from modelgrid.control.workspaces import Workspaces
from modelgrid.core.errors import InvalidRequestError, NotFoundError
from modelgrid.protocol.admin import (
    LIMIT_COLUMNS,
    CreatedKeyObject,
    KeyCreate,
    KeyObject,
    KeyPatch,
    KeyRotate,
    WorkspaceCreate,
)
from modelgrid.storage import control_state
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import ApiKey, Workspace
from modelgrid.tenancy import audit, keys
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions, find_key, find_workspace

DEFAULT_WORKSPACE = "default"
ADMIN_WORKSPACE = "admin"
SYSTEM_ACTOR = "system:first-start"


def key_object(k: ApiKey) -> KeyObject:
    return KeyObject(
        id=k.id,
        prefix=k.prefix,
        name=k.name,
        role=k.role,
        workspace_id=k.workspace_id,
        allowed_models=k.allowed_models,
        allowed_regions=k.allowed_regions,
        allowed_jurisdictions=k.allowed_jurisdictions,
        limits=limits_of(k),
        expires_at=aware(k.expires_at) if k.expires_at else None,
        created_at=aware(k.created_at),
        revoked_at=aware(k.revoked_at) if k.revoked_at else None,
    )


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


def _key_row(
    new: keys.NewKey,
    workspace_id: str,
    name: str,
    role: str,
    scopes: tuple[list[str] | None, list[str] | None, list[str] | None],
    expires: datetime | None,
    now: datetime,
    limits: dict[str, Any],
) -> ApiKey:
    """The row of a new key: its id and hash, never its plaintext; ``scopes`` are its
    (models, regions, jurisdictions)."""
    models, regions, jurisdictions = scopes
    return ApiKey(
        id=new.key_id,
        workspace_id=workspace_id,
        name=name,
        role=role,
        prefix=new.prefix,
        secret_hash=new.secret_hash,
        allowed_models=models,
        allowed_regions=regions,
        allowed_jurisdictions=jurisdictions,
        expires_at=expires,
        created_at=now,
        **limits,
    )


def _not_revoked(row: ApiKey) -> None:
    if row.revoked_at is not None:
        raise InvalidRequestError(
            f"API key {row.prefix} is revoked.", param="key_id", code="key_revoked"
        )


class Keys(Area):
    """API-key administration.

    Args:
        sessions: The database.
        inventory: What exists now (regions, jurisdictions, models).
        hooks: Told after each change.
        workspaces: Creates the workspaces of ``first_keys``.
    """

    def __init__(
        self,
        sessions: Sessions,
        inventory: Callable[[], Inventory],
        hooks: Hooks,
        workspaces: Workspaces,
    ) -> None:
        super().__init__(sessions, inventory, hooks)
        self._workspaces = workspaces

    async def create(self, workspace: str, body: KeyCreate, *, actor: str) -> CreatedKeyObject:
        """Create a key in ``workspace`` (id or name); its plaintext is returned once.

        Raises:
            NotFoundError: no such workspace.
            InvalidRequestError: regions outside the workspace's; an unknown model, region or
                jurisdiction; expiry not in the future.
        """
        self._check_scopes(body.allowed_models, body.allowed_regions, body.allowed_jurisdictions)
        now = datetime.now(UTC)
        expires = _expiry(body.expires_at, body.expires_in_s, now)
        new = keys.generate_key()
        async with self._sessions() as session, session.begin():
            ws = await find_workspace(session, workspace)
            regions = dedupe(body.allowed_regions)
            _check_within(regions, ws, "allowed_regions")
            jurisdictions = dedupe(body.allowed_jurisdictions)
            _check_within(jurisdictions, ws, "allowed_jurisdictions")
            row = await repo.add_api_key(
                session,
                _key_row(
                    new,
                    ws.id,
                    body.name,
                    body.role,
                    (dedupe(body.allowed_models), regions, jurisdictions),
                    expires,
                    now,
                    limit_columns(body.limits),
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

    def _check_scopes(
        self,
        models: list[str] | None,
        regions: list[str] | None,
        jurisdictions: list[str] | None,
    ) -> None:
        inv = self._inventory()
        inv.check_models(models, "allowed_models")
        inv.check_regions(regions, "allowed_regions")
        inv.check_jurisdictions(jurisdictions, "allowed_jurisdictions")

    async def list(
        self, *, workspace: str | None = None, include_revoked: bool = False
    ) -> list[KeyObject]:
        """Keys (never their secrets), optionally of one workspace (id or name)."""
        async with self._sessions() as session:
            ws_id = None if workspace is None else (await find_workspace(session, workspace)).id
            rows = await repo.list_api_keys(
                session, include_revoked=include_revoked, workspace_id=ws_id
            )
            return [key_object(k) for k in rows]

    async def get(self, ident: str) -> KeyObject:
        """The key with id or prefix ``ident``. Raises ``NotFoundError``."""
        async with self._sessions() as session:
            return key_object(await find_key(session, ident))

    async def update(self, ident: str, body: KeyPatch, *, actor: str) -> KeyObject:
        """Change a key's name, scopes, expiry or limits (only the fields ``body`` sets).

        Raises:
            NotFoundError: no such key.
            InvalidRequestError: the key is revoked; regions outside the workspace's; an
                unknown model, region or jurisdiction.
        """
        fields = body.model_fields_set
        self._check_scopes(
            body.allowed_models if "allowed_models" in fields else None,
            body.allowed_regions if "allowed_regions" in fields else None,
            body.allowed_jurisdictions if "allowed_jurisdictions" in fields else None,
        )
        async with self._sessions() as session, session.begin():
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
                ch.set(
                    "expires_at", "expires_at", _expiry(body.expires_at, None, datetime.now(UTC))
                )
            ch.limits(body.limits)
            if ch.done:
                await audit.record(
                    session,
                    actor=actor,
                    action="key.update",
                    target=f"api_key:{row.id}",
                    details=ch.done,
                )
                await control_state.bump(session, control_state.PRINCIPALS)
        if ch.done:
            self._hooks.principals_changed()
        return key_object(row)

    async def revoke(self, ident: str, *, actor: str) -> KeyObject:
        """Revoke a key now (idempotent: a revoked key is returned as it is, with no new entry).

        Raises:
            NotFoundError: no such key.
        """
        async with self._sessions() as session, session.begin():
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
                await control_state.bump(session, control_state.PRINCIPALS)
        self._hooks.principals_changed()
        return key_object(row)

    async def rotate(
        self, ident: str, body: KeyRotate | None = None, *, actor: str
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
        async with self._sessions() as session, session.begin():
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
                _key_row(
                    new,
                    old.workspace_id,
                    old.name,
                    old.role,
                    (old.allowed_models, old.allowed_regions, old.allowed_jurisdictions),
                    expires,
                    now,
                    {col: getattr(old, col) for col in LIMIT_COLUMNS.values()},
                ),
            )
            await audit.record(
                session,
                actor=actor,
                action="key.rotate",
                target=f"api_key:{old.id}",
                details={
                    "new_key_id": row.id,
                    "workspace_id": row.workspace_id,
                    "expires_at": expires,
                },
            )
            await control_state.bump(session, control_state.PRINCIPALS)
        self._hooks.principals_changed()
        return CreatedKeyObject(**key_object(row).model_dump(), key=new.plaintext)

    async def create_in(
        self, workspace: str, body: KeyCreate, *, actor: str, create_workspace: bool = False
    ) -> CreatedKeyObject:
        """``create``, first creating the workspace named ``workspace`` if there is none and
        ``create_workspace`` is set (or it is the ``default`` workspace).

        Raises:
            NotFoundError: no such workspace, and creating it was not asked for.
            See ``create`` and ``Workspaces.create``.
        """
        try:
            await self._workspaces.get(workspace)
        except NotFoundError:
            if not (create_workspace or workspace == DEFAULT_WORKSPACE):
                raise NotFoundError(
                    f"There is no workspace '{workspace}': create it first (`modelgrid "
                    f"workspaces create {workspace}`), or ask for it to be created "
                    "(--create-workspace).",
                    param="workspace",
                ) from None
            await self._workspaces.create(WorkspaceCreate(name=workspace), actor=actor)
        return await self.create(workspace, body, actor=actor)

    async def first_keys(self) -> tuple[CreatedKeyObject, CreatedKeyObject] | None:
        """First start: an admin key (workspace ``admin``) and a first tenant key (workspace
        ``default``), audited as ``system:first-start``; ``None`` if an admin key exists."""
        async with self._sessions() as session:
            if await repo.count_api_keys(session, "admin"):
                return None
        admin = await self.create_in(
            ADMIN_WORKSPACE,
            KeyCreate(name="admin", role="admin"),
            actor=SYSTEM_ACTOR,
            create_workspace=True,
        )
        first = await self.create_in(
            DEFAULT_WORKSPACE, KeyCreate(name="first-key"), actor=SYSTEM_ACTOR
        )
        return admin, first


__all__ = ["ADMIN_WORKSPACE", "DEFAULT_WORKSPACE", "Keys", "key_object"]
