"""Keys: list (with last use), create (scopes, limits, expiry; the secret shown once), rotate,
revoke, and one key's page.

An operator sees every key (filter by workspace) and may create admin keys; a workspace
member sees its workspace's keys and manages its tenant keys (an admin key in its workspace
only an operator rotates or revokes); a key holder sees only its
own key, read-only. Another workspace's key is a 404. SQL: the key list (one statement, plus
the workspace lookup when filtered), the workspace list for an operator, and the keys' last
use (one statement, ``usage_reports.keys_last_used``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from starlette.responses import RedirectResponse, Response

from modelgrid.console import forms
from modelgrid.console.access import EVERYONE, MEMBERS, Viewer
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
from modelgrid.core.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from modelgrid.protocol.admin import CreatedKeyObject, KeyCreate, KeyObject
from modelgrid.tenancy import audit, usage_reports

router = page_router(EVERYONE, prefix="/keys")
MAX_SHOWN = 200
"""Keys listed at most (a filter by workspace narrows a longer list)."""
Form = Annotated[dict[str, str], Depends(form_fields)]


async def _visible_key(state: ConsoleState, viewer: Viewer, key_id: str) -> KeyObject:
    """The key ``key_id`` if ``viewer`` may see it. Raises: NotFoundError."""
    if "_" in key_id:  # a whole key (a secret) never names a page
        raise NotFoundError("No API key here.")
    key = await state.control.keys.get(key_id)
    viewer.check_key(key.id, key.workspace_id)
    return key


async def _manageable_key(state: ConsoleState, viewer: Viewer, key_id: str) -> KeyObject:
    """The key ``key_id`` if ``viewer`` may rotate or revoke it: a member its workspace's
    tenant keys, an operator any key. Raises: NotFoundError (not visible),
    PermissionDeniedError (an admin key, and the viewer no operator)."""
    require(viewer, MEMBERS)
    key = await _visible_key(state, viewer, key_id)
    if key.role != "tenant" and not viewer.is_operator:
        raise PermissionDeniedError("Only an operator may rotate or revoke an admin key.")
    return key


async def _page(
    request: Request,
    state: ConsoleState,
    viewer: Viewer,
    *,
    workspace: str = "",
    revoked: bool = False,
    created: CreatedKeyObject | None = None,
    error: str = "",
    status: int = 200,
    partial: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    control = state.control
    workspaces = await control.workspaces.list() if viewer.is_operator else []
    if viewer.access == "key":
        keys = [await control.keys.get(viewer.key_id)]
    else:
        scope = viewer.workspace_scope() or (workspace or None)
        keys = await control.keys.list(workspace=scope, include_revoked=revoked)
    total = len(keys)
    keys = keys[::-1][:MAX_SHOWN]  # newest first
    last_used = await usage_reports.keys_last_used(state.app.sessions, [k.id for k in keys])
    inventory = control.inventory()
    return render(
        request,
        "keys.html",
        viewer,
        page="keys",
        title="Keys",
        status=status,
        partial=partial,
        keys=keys,
        total=total,
        last_used=last_used,
        workspaces=workspaces,
        workspace_names={w.id: w.name for w in workspaces},
        workspace=workspace,
        revoked=revoked,
        created=created,
        error=error,
        models=sorted(inventory.models),
        regions=sorted(inventory.regions),
        form=form or {},
        may_manage=viewer.access in MEMBERS,
    )


@router.get("")
async def keys_page(
    request: Request,
    state: StateDep,
    viewer: ViewerDep,
    workspace: Annotated[str, Query(max_length=200)] = "",
    revoked: bool = False,
) -> Response:
    return await _page(request, state, viewer, workspace=workspace, revoked=revoked)


def _create_body(form: dict[str, str], viewer: Viewer) -> tuple[str, KeyCreate]:
    """(workspace, body) of the create form. Raises: InvalidRequestError."""
    role = form.get("role", "tenant") or "tenant"
    if role != "tenant" and not viewer.is_operator:
        raise InvalidRequestError("Only an operator may create admin keys.", param="role")
    workspace = form.get("workspace", "").strip() if viewer.is_operator else viewer.workspace_id
    if not workspace:
        raise InvalidRequestError("Choose the key's workspace.", param="workspace")
    days = forms.integer(form, "expires_in_days")
    data: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "role": role,
        "allowed_models": forms.names(form, "allowed_models"),
        "allowed_regions": forms.names(form, "allowed_regions"),
        "expires_in_s": None if days is None else days * 86400,
        "limits": forms.limits(form),
    }
    return workspace, forms.body(KeyCreate, data)


@router.post("")
async def create_key(request: Request, state: StateDep, viewer: PostDep, form: Form) -> Response:
    require(viewer, MEMBERS)
    try:
        workspace, body = _create_body(form, viewer)
        if not viewer.is_operator:
            viewer.check_workspace(workspace)
        created = await state.control.keys.create(
            workspace, body, actor=audit.api_actor(viewer.key_id)
        )
    except (InvalidRequestError, NotFoundError) as exc:
        return await _page(
            request,
            state,
            viewer,
            error=exc.message,
            status=exc.status,
            partial="keys_body.html",
            form=form,
        )
    return await _page(request, state, viewer, created=created, partial="keys_body.html")


@router.get("/{key_id}")
async def key_page(request: Request, state: StateDep, viewer: ViewerDep, key_id: str) -> Response:
    key = await _visible_key(state, viewer, key_id)
    last_used = await usage_reports.keys_last_used(state.app.sessions, [key.id])
    return render(
        request,
        "key.html",
        viewer,
        page="keys",
        title=f"Key {key.prefix}",
        key=key,
        last_used=last_used,
        may_manage=viewer.access in MEMBERS,
    )


@router.post("/{key_id}/revoke")
async def revoke_key(request: Request, state: StateDep, viewer: PostDep, key_id: str) -> Response:
    key = await _manageable_key(state, viewer, key_id)
    key = await state.control.keys.revoke(key.id, actor=audit.api_actor(viewer.key_id))
    if request.headers.get("hx-request") == "true":
        last_used = await usage_reports.keys_last_used(state.app.sessions, [key.id])
        return render(
            request,
            "key_row.html",
            viewer,
            k=key,
            last_used=last_used,
            workspace_names={},
            may_manage=True,
        )
    return RedirectResponse(f"{base_path(request)}/keys", status_code=303)


@router.post("/{key_id}/rotate")
async def rotate_key(request: Request, state: StateDep, viewer: PostDep, key_id: str) -> Response:
    key = await _manageable_key(state, viewer, key_id)
    try:
        created = await state.control.keys.rotate(key.id, actor=audit.api_actor(viewer.key_id))
    except InvalidRequestError as exc:
        return await _page(
            request, state, viewer, error=exc.message, status=400, partial="keys_body.html"
        )
    return await _page(request, state, viewer, created=created, partial="keys_body.html")


__all__ = ["router"]
