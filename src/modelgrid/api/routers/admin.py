"""The admin API, ``/admin/v1/...``: workspaces, keys, prices, usage, invoices, audit.

Lists take ``limit`` (1..1000, default 100) and ``after`` (the previous page's ``last_id``;
``api.paging``); the audit log, newest first, takes ``before`` instead. Admin keys only: a tenant key gets 403 ``permission_error``, a missing or invalid key 401
(and admin keys, conversely, get 403 on the model API). Bodies are ``protocol.admin`` models
(unknown fields are a 400); errors use the OpenAI envelope. Changes go through the control plane
(``state.control``: validated against what exists, audited with the admin key's prefix as
its actor, caches dropped after); the read models are ``tenancy.billing`` and
``tenancy.audit``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from modelgrid.api.deps import AdminDep, StateDep
from modelgrid.api.paging import BackwardOnly, Cursor, ForwardOnly, page, page_of
from modelgrid.protocol.admin import (
    CreatedKeyObject,
    Invoice,
    KeyCreate,
    KeyObject,
    KeyPatch,
    KeyRotate,
    ListPage,
    PriceCreate,
    PriceObject,
    UsagePage,
    WorkspaceCreate,
    WorkspaceObject,
    WorkspacePatch,
)
from modelgrid.tenancy import audit, billing
from modelgrid.tenancy.service import Principal

router = APIRouter(prefix="/admin/v1", tags=["admin"])

Limit = Annotated[int, Query(ge=1, le=billing.MAX_PAGE)]


def _actor(principal: Principal) -> str:
    return audit.api_actor(principal.key_id)


# --- workspaces ------------------------------------------------------------------------------


@router.post("/workspaces")
async def create_workspace(
    body: WorkspaceCreate, state: StateDep, admin: AdminDep
) -> WorkspaceObject:
    return await state.control.workspaces.create(body, actor=_actor(admin))


@router.get("/workspaces")
async def list_workspaces(
    state: StateDep, _: AdminDep, __: ForwardOnly, after: Cursor = None, limit: Limit = 100
) -> ListPage:
    return page_of(
        await state.control.workspaces.list(), after=after, limit=limit, noun="workspace"
    )


@router.get("/workspaces/{workspace_id}")
async def get_workspace(workspace_id: str, state: StateDep, _: AdminDep) -> WorkspaceObject:
    return await state.control.workspaces.get(workspace_id)


@router.patch("/workspaces/{workspace_id}")
async def update_workspace(
    workspace_id: str, body: WorkspacePatch, state: StateDep, admin: AdminDep
) -> WorkspaceObject:
    return await state.control.workspaces.update(workspace_id, body, actor=_actor(admin))


@router.get("/workspaces/{workspace_id}/invoices/{month}", response_model=None)
async def get_invoice(
    workspace_id: str,
    month: str,
    state: StateDep,
    _: AdminDep,
    format: Literal["json", "csv"] = "json",
) -> Invoice | Response:
    inv = await billing.invoice(state.sessions, workspace_id, month)
    if format == "json":
        return inv
    return Response(
        billing.invoice_csv(inv),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="invoice-{inv.workspace_id}-{month}.csv"'
        },
    )


# --- keys ------------------------------------------------------------------------------------


@router.post("/workspaces/{workspace_id}/keys")
async def create_key(
    workspace_id: str, body: KeyCreate, state: StateDep, admin: AdminDep
) -> CreatedKeyObject:
    return await state.control.keys.create(workspace_id, body, actor=_actor(admin))


@router.get("/keys")
async def list_keys(
    state: StateDep,
    _: AdminDep,
    __: ForwardOnly,
    workspace_id: str | None = None,
    include_revoked: bool = False,
    after: Cursor = None,
    limit: Limit = 100,
) -> ListPage:
    data = await state.control.keys.list(workspace=workspace_id, include_revoked=include_revoked)
    return page_of(data, after=after, limit=limit, noun="key")


@router.get("/keys/{key_id}")
async def get_key(key_id: str, state: StateDep, _: AdminDep) -> KeyObject:
    return await state.control.keys.get(key_id)


@router.patch("/keys/{key_id}")
async def update_key(key_id: str, body: KeyPatch, state: StateDep, admin: AdminDep) -> KeyObject:
    return await state.control.keys.update(key_id, body, actor=_actor(admin))


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, state: StateDep, admin: AdminDep) -> KeyObject:
    return await state.control.keys.revoke(key_id, actor=_actor(admin))


@router.post("/keys/{key_id}/rotate")
async def rotate_key(
    key_id: str, state: StateDep, admin: AdminDep, body: KeyRotate | None = None
) -> CreatedKeyObject:
    return await state.control.keys.rotate(key_id, body, actor=_actor(admin))


# --- prices, usage, audit --------------------------------------------------------------------


@router.post("/prices")
async def add_price(body: PriceCreate, state: StateDep, admin: AdminDep) -> PriceObject:
    return await state.control.prices.add(body, actor=_actor(admin))


@router.get("/prices")
async def list_prices(
    state: StateDep,
    _: AdminDep,
    __: ForwardOnly,
    model: str | None = None,
    after: Cursor = None,
    limit: Limit = 100,
) -> ListPage:
    return page_of(await state.control.prices.list(model), after=after, limit=limit, noun="price")


@router.get("/usage")
async def usage(
    state: StateDep,
    _: AdminDep,
    __: ForwardOnly,
    workspace_id: str | None = None,
    month: str | None = None,
    limit: Limit = 100,
    after: Cursor = None,
) -> UsagePage:
    return await billing.usage(
        state.sessions, workspace=workspace_id, month=month, limit=limit, after=after
    )


@router.get("/audit")
async def list_audit(
    state: StateDep,
    _: AdminDep,
    __: BackwardOnly,
    limit: Limit = 100,
    before: Cursor = None,
    action: str | None = None,
    target: str | None = None,
) -> ListPage:
    """Newest first; ``before`` (the previous page's ``last_id``) pages to older entries."""
    data, more = await audit.list_entries(
        state.sessions,
        limit=limit,
        before=None if before is None else audit.entry_id(before),
        action=action,
        target=target,
    )
    return page(data, has_more=more)


__all__ = ["router"]
