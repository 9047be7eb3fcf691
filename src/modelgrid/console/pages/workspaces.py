"""Workspaces and their limits: an operator lists, creates and edits them (limits, allowed
regions, home region); a workspace member sees its own, read-only. Another workspace is a
404 to a tenant. SQL: one statement for the list or one workspace (a change: the control
plane's transaction).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.responses import RedirectResponse, Response

from modelgrid.console import forms
from modelgrid.console.access import MEMBERS, OPERATORS, Viewer
from modelgrid.console.deps import (
    ConsoleState,
    PostDep,
    StateDep,
    ViewerDep,
    form_fields,
    page_router,
    require,
)
from modelgrid.console.templating import base_path, render
from modelgrid.core.errors import ConflictError, InvalidRequestError, NotFoundError
from modelgrid.protocol.admin import WorkspaceCreate, WorkspaceObject, WorkspacePatch
from modelgrid.tenancy import audit

router = page_router(MEMBERS, prefix="/workspaces")
Form = Annotated[dict[str, str], Depends(form_fields)]


async def _visible(state: ConsoleState, viewer: Viewer, ident: str) -> WorkspaceObject:
    ws = await state.control.workspaces.get(ident)
    viewer.check_workspace(ws.id)
    return ws


async def _list_page(
    request: Request,
    state: ConsoleState,
    viewer: Viewer,
    *,
    error: str = "",
    status: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    if viewer.is_operator:
        workspaces = await state.control.workspaces.list()
    else:
        workspaces = [await state.control.workspaces.get(viewer.workspace_id)]
    inventory = state.control.inventory()
    return render(
        request,
        "workspaces.html",
        viewer,
        page="workspaces",
        title="Workspaces",
        status=status,
        workspaces=workspaces,
        regions=sorted(inventory.regions),
        error=error,
        form=form or {},
    )


@router.get("")
async def workspaces_page(request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    return await _list_page(request, state, viewer)


@router.post("")
async def create_workspace(
    request: Request, state: StateDep, viewer: PostDep, form: Form
) -> Response:
    require(viewer, OPERATORS)
    data: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "currency": form.get("currency", "USD").strip().upper() or "USD",
        "home_region": form.get("home_region", "").strip() or None,
        "allowed_regions": forms.names(form, "allowed_regions"),
        "limits": forms.limits(form),
    }
    try:
        ws = await state.control.workspaces.create(
            forms.body(WorkspaceCreate, data), actor=audit.api_actor(viewer.key_id)
        )
    except (InvalidRequestError, ConflictError) as exc:
        return await _list_page(
            request, state, viewer, error=exc.message, status=exc.status, form=form
        )
    return RedirectResponse(f"{base_path(request)}/workspaces/{ws.id}", status_code=303)


async def _detail(
    request: Request,
    state: ConsoleState,
    viewer: Viewer,
    ws: WorkspaceObject,
    *,
    error: str = "",
    saved: bool = False,
    status: int = 200,
) -> Response:
    inventory = state.control.inventory()
    return render(
        request,
        "workspace.html",
        viewer,
        page="workspaces",
        title=f"Workspace {ws.name}",
        status=status,
        ws=ws,
        regions=sorted(inventory.regions),
        error=error,
        saved=saved,
    )


@router.get("/{workspace_id}")
async def workspace_page(
    request: Request, state: StateDep, viewer: ViewerDep, workspace_id: str
) -> Response:
    ws = await _visible(state, viewer, workspace_id)
    return await _detail(request, state, viewer, ws, saved=request.query_params.get("saved") == "1")


@router.post("/{workspace_id}")
async def update_workspace(
    request: Request, state: StateDep, viewer: PostDep, workspace_id: str, form: Form
) -> Response:
    ws = await _visible(state, viewer, workspace_id)
    require(viewer, OPERATORS)
    data: dict[str, Any] = {
        "allowed_regions": forms.names(form, "allowed_regions"),
        "limits": forms.limits(form),
    }
    if form.get("home_region", "").strip():
        data["home_region"] = form["home_region"].strip()
    try:
        ws = await state.control.workspaces.update(
            ws.id, forms.body(WorkspacePatch, data), actor=audit.api_actor(viewer.key_id)
        )
    except (InvalidRequestError, NotFoundError) as exc:
        return await _detail(request, state, viewer, ws, error=exc.message, status=exc.status)
    return RedirectResponse(f"{base_path(request)}/workspaces/{ws.id}?saved=1", status_code=303)


__all__ = ["router"]
