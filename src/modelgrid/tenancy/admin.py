"""Workspace management for the admin plane (the admin API and the CLI), and the helpers it
shares with key management (``tenancy.key_admin``).

Every change runs in one transaction with its audit entry (``tenancy.audit``). Workspaces are
named by id or by name; keys by id or display prefix (``mg-<id>``). A PATCH applies only the
fields its body sets, and a change that changes nothing writes no audit entry.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from modelgrid.core.errors import ConflictError, InvalidRequestError, NotFoundError
from modelgrid.protocol.admin import (
    LIMIT_COLUMNS,
    KeyObject,
    Limits,
    WorkspaceCreate,
    WorkspaceObject,
    WorkspacePatch,
)
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import ApiKey, Workspace
from modelgrid.tenancy import audit, keys
from modelgrid.tenancy.audit import aware

Sessions = async_sessionmaker[Any]


def dedupe(values: list[str] | None) -> list[str] | None:
    return None if values is None else list(dict.fromkeys(values))


def limits_of(row: Any) -> Limits:
    return Limits(**{name: getattr(row, col) for name, col in LIMIT_COLUMNS.items()})


def workspace_object(ws: Workspace) -> WorkspaceObject:
    return WorkspaceObject(
        id=ws.id,
        name=ws.name,
        currency=ws.currency,
        home_region=ws.home_region,
        allowed_regions=ws.allowed_regions,
        allowed_jurisdictions=ws.allowed_jurisdictions,
        limits=limits_of(ws),
        created_at=aware(ws.created_at),
    )


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


class Changes:
    """Applies a PATCH field by field and remembers ``{field: {"from", "to"}}`` for audit."""

    def __init__(self, row: Any) -> None:
        self.row = row
        self.done: dict[str, Any] = {}

    def set(self, field: str, attr: str, new: Any) -> None:
        old = getattr(self.row, attr)
        if isinstance(old, datetime):
            old = aware(old)
        if old != new:
            setattr(self.row, attr, new)
            self.done[field] = {"from": old, "to": new}

    def limits(self, limits: Limits | None) -> None:
        if limits is None:
            return
        for name in limits.model_fields_set:
            self.set(f"limits.{name}", LIMIT_COLUMNS[name], getattr(limits, name))


def limit_columns(limits: Limits) -> dict[str, Any]:
    return {col: getattr(limits, name) for name, col in LIMIT_COLUMNS.items()}


def set_limits(limits: Limits) -> dict[str, Any]:
    return {k: v for k, v in limits.model_dump().items() if v is not None}


def _check_home(home: str, allowed: list[str] | None) -> None:
    if allowed is not None and home not in allowed:
        raise InvalidRequestError(
            f"home_region '{home}' is not one of allowed_regions {allowed}.", param="home_region"
        )


async def find_workspace(session: AsyncSession, ident: str) -> Workspace:
    ws = await repo.get_workspace(session, ident) or await repo.get_workspace_by_name(
        session, ident
    )
    if ws is None:
        raise NotFoundError(f"No workspace '{ident}'.", param="workspace_id")
    return ws


async def find_key(session: AsyncSession, ident: str) -> ApiKey:
    """The key with id ``ident`` (or its display prefix ``mg-<id>``).

    Raises:
        InvalidRequestError: ``ident`` is a whole key (id and secret): keys are named by
            their id, and a secret has no place in a URL (nor is it echoed back).
        NotFoundError: no such key.
    """
    if "_" in ident and keys.parse_key_id(ident) is not None:
        shown = ident.split("_", 1)[0]
        raise InvalidRequestError(
            f"Name the key by its id ('{shown}'), not the whole key: a secret does not "
            "belong in a URL.",
            param="key_id",
        )
    row = await repo.get_api_key(session, ident.removeprefix(keys.KEY_PREFIX))
    if row is None:
        shown = ident.split("_", 1)[0] if "_" in ident else ident  # never echo a secret
        raise NotFoundError(f"No API key '{shown}'.", param="key_id")
    return row


# --- workspaces ------------------------------------------------------------------------------


async def create_workspace(
    sessions: Sessions, body: WorkspaceCreate, *, actor: str
) -> WorkspaceObject:
    """Create a workspace.

    Raises:
        ConflictError: the name is taken.
        InvalidRequestError: ``home_region`` outside ``allowed_regions``.
    """
    regions = dedupe(body.allowed_regions)
    home = body.home_region or (regions[0] if regions else "local")
    _check_home(home, regions)
    try:
        async with sessions() as session, session.begin():
            if await repo.get_workspace_by_name(session, body.name) is not None:
                raise ConflictError(f"A workspace named '{body.name}' exists.", param="name")
            ws = await repo.add_workspace(
                session,
                f"ws_{secrets.token_hex(8)}",
                body.name,
                currency=body.currency,
                home_region=home,
                allowed_regions=regions,
                allowed_jurisdictions=dedupe(body.allowed_jurisdictions),
                **limit_columns(body.limits),
            )
            details = body.model_dump(exclude={"limits"}) | {
                "home_region": home,
                "limits": set_limits(body.limits),
            }
            await audit.record(
                session,
                actor=actor,
                action="workspace.create",
                target=f"workspace:{ws.id}",
                details=details,
            )
    except IntegrityError:  # lost a race for the name
        raise ConflictError(f"A workspace named '{body.name}' exists.", param="name") from None
    return workspace_object(ws)


async def list_workspaces(sessions: Sessions) -> list[WorkspaceObject]:
    async with sessions() as session:
        return [workspace_object(ws) for ws in await repo.list_workspaces(session)]


async def get_workspace(sessions: Sessions, ident: str) -> WorkspaceObject:
    """The workspace with id or name ``ident``. Raises ``NotFoundError``."""
    async with sessions() as session:
        return workspace_object(await find_workspace(session, ident))


async def update_workspace(
    sessions: Sessions, ident: str, body: WorkspacePatch, *, actor: str
) -> WorkspaceObject:
    """Change limits, allowed regions or jurisdictions, home region (only the fields ``body``
    sets).

    Raises:
        NotFoundError: no such workspace.
        InvalidRequestError: the result would have its home region outside its regions.
    """
    fields = body.model_fields_set
    async with sessions() as session, session.begin():
        ws = await find_workspace(session, ident)
        ch = Changes(ws)
        if "allowed_regions" in fields:
            ch.set("allowed_regions", "allowed_regions", dedupe(body.allowed_regions))
        if "allowed_jurisdictions" in fields:
            jurisdictions = dedupe(body.allowed_jurisdictions)
            ch.set("allowed_jurisdictions", "allowed_jurisdictions", jurisdictions)
        if "home_region" in fields:
            if body.home_region is None:
                raise InvalidRequestError("home_region cannot be null.", param="home_region")
            ch.set("home_region", "home_region", body.home_region)
        ch.limits(body.limits)
        _check_home(ws.home_region, ws.allowed_regions)
        if ch.done:
            await audit.record(
                session,
                actor=actor,
                action="workspace.update",
                target=f"workspace:{ws.id}",
                details=ch.done,
            )
    return workspace_object(ws)


__all__ = [
    "Changes",
    "Sessions",
    "create_workspace",
    "dedupe",
    "find_key",
    "find_workspace",
    "get_workspace",
    "key_object",
    "limit_columns",
    "limits_of",
    "list_workspaces",
    "set_limits",
    "update_workspace",
    "workspace_object",
]
