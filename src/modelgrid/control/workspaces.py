"""Workspaces: create, list, show, change (the admin API, the CLI and the console call this).

Every change runs in one transaction with its audit entry (``tenancy.audit``) and is checked
against what exists (``control.inventory``): ``home_region`` and ``allowed_regions`` must be
regions of the topology, ``allowed_jurisdictions`` the jurisdiction of one of its regions,
and the home region one of the allowed ones. A name is unambiguous: unique, without ``/``,
and not shaped like a workspace id (``ws_…``), since workspaces are named by either.
After a change, the ``principals_changed`` hook drops cached principals everywhere.
"""

from __future__ import annotations

import re
import secrets

from sqlalchemy.exc import IntegrityError

from modelgrid.control.area import Area
from modelgrid.control.changes import Changes, dedupe, limit_columns, limits_of, set_limits
from modelgrid.core.errors import ConflictError, InvalidRequestError
from modelgrid.protocol.admin import WorkspaceCreate, WorkspaceObject, WorkspacePatch
from modelgrid.storage import control_state
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import Workspace
from modelgrid.tenancy import audit
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import find_workspace

_ID_SHAPED = re.compile(r"^ws_")


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


def check_name(name: str) -> None:
    """Raises: InvalidRequestError: a name with ``/`` or shaped like a workspace id."""
    if "/" in name or _ID_SHAPED.match(name):
        raise InvalidRequestError(
            f"A workspace name may not contain '/' nor look like a workspace id (ws_…): '{name}'.",
            param="name",
        )


def _check_home(home: str, allowed: list[str] | None) -> None:
    if allowed is not None and home not in allowed:
        raise InvalidRequestError(
            f"home_region '{home}' is not one of allowed_regions {allowed}.", param="home_region"
        )


class Workspaces(Area):
    """Workspace administration.

    Args:
        sessions: The database.
        inventory: What exists now (regions, jurisdictions, models).
        hooks: Told after each change.
    """

    async def create(self, body: WorkspaceCreate, *, actor: str) -> WorkspaceObject:
        """Create a workspace; ``home_region`` defaults to the first allowed region, else
        the gateway's region.

        Raises:
            ConflictError: the name is taken.
            InvalidRequestError: an unknown region or jurisdiction; an ambiguous name;
                ``home_region`` outside ``allowed_regions``.
        """
        check_name(body.name)
        inv = self._inventory()
        regions = dedupe(body.allowed_regions)
        inv.check_regions(regions, "allowed_regions")
        jurisdictions = dedupe(body.allowed_jurisdictions)
        inv.check_jurisdictions(jurisdictions, "allowed_jurisdictions")
        home = body.home_region or (regions[0] if regions else inv.gateway_region)
        inv.check_regions([home], "home_region")
        _check_home(home, regions)
        try:
            async with self._sessions() as session, session.begin():
                if await repo.get_workspace_by_name(session, body.name) is not None:
                    raise ConflictError(f"A workspace named '{body.name}' exists.", param="name")
                ws = await repo.add_workspace(
                    session,
                    f"ws_{secrets.token_hex(8)}",
                    body.name,
                    currency=body.currency,
                    home_region=home,
                    allowed_regions=regions,
                    allowed_jurisdictions=jurisdictions,
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

    async def list(self) -> list[WorkspaceObject]:
        async with self._sessions() as session:
            return [workspace_object(ws) for ws in await repo.list_workspaces(session)]

    async def get(self, ident: str) -> WorkspaceObject:
        """The workspace with id or name ``ident``. Raises ``NotFoundError``."""
        async with self._sessions() as session:
            return workspace_object(await find_workspace(session, ident))

    async def update(self, ident: str, body: WorkspacePatch, *, actor: str) -> WorkspaceObject:
        """Change limits, allowed regions or jurisdictions, home region (only the fields
        ``body`` sets).

        Raises:
            NotFoundError: no such workspace.
            InvalidRequestError: an unknown region or jurisdiction; the result would have its
                home region outside its regions.
        """
        fields = body.model_fields_set
        inv = self._inventory()
        async with self._sessions() as session, session.begin():
            ws = await find_workspace(session, ident)
            ch = Changes(ws)
            if "allowed_regions" in fields:
                regions = dedupe(body.allowed_regions)
                inv.check_regions(regions, "allowed_regions")
                ch.set("allowed_regions", "allowed_regions", regions)
            if "allowed_jurisdictions" in fields:
                jurisdictions = dedupe(body.allowed_jurisdictions)
                inv.check_jurisdictions(jurisdictions, "allowed_jurisdictions")
                ch.set("allowed_jurisdictions", "allowed_jurisdictions", jurisdictions)
            if "home_region" in fields:
                if body.home_region is None:
                    raise InvalidRequestError("home_region cannot be null.", param="home_region")
                inv.check_regions([body.home_region], "home_region")
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
                await control_state.bump(session, control_state.PRINCIPALS)
        if ch.done:
            self._hooks.principals_changed()
        return workspace_object(ws)


__all__ = ["Workspaces", "check_name", "workspace_object"]
