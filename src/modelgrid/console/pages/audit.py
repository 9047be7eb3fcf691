"""The audit log: newest first, 50 entries a page (keyset: ``before`` the last id shown),
filtered by workspace and action. An operator sees every entry; a workspace member only its
workspace's (``audit_log.workspace_id``). SQL: one statement a page (plus the workspace list
of an operator's filter).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from starlette.responses import Response

from modelgrid.console.access import MEMBERS
from modelgrid.console.deps import StateDep, ViewerDep, page_router
from modelgrid.console.templating import render
from modelgrid.tenancy import audit

router = page_router(MEMBERS, prefix="/audit")
PAGE_SIZE = 50


@router.get("")
async def audit_page(
    request: Request,
    state: StateDep,
    viewer: ViewerDep,
    workspace: Annotated[str, Query(max_length=40)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    scope = viewer.workspace_scope() or (workspace or None)
    entries, more = await audit.list_entries(
        state.app.sessions,
        limit=PAGE_SIZE,
        before=before,
        action=action or None,
        workspace_id=scope,
    )
    workspaces = await state.control.workspaces.list() if viewer.is_operator else []
    return render(
        request,
        "audit.html",
        viewer,
        page="audit",
        title="Audit log",
        entries=entries,
        more=more,
        workspace=workspace,
        action=action,
        workspaces=workspaces,
        actions=ACTIONS,
    )


ACTIONS = (
    "workspace.create",
    "workspace.update",
    "key.create",
    "key.update",
    "key.revoke",
    "key.rotate",
    "price.create",
    "console.sign_in",
    "console.sign_out",
)
"""The actions the filter offers (any other can be typed into the URL)."""

__all__ = ["router"]
