"""Batches: the workspace's batch jobs, newest first, 50 a page, read-only — status, model,
endpoint, request counts (total, completed, failed), tokens, times (``control.batches``).

An operator sees every workspace's (or one's), a workspace member and a key holder their
workspace's. SQL: one statement a page (plus the anchor of a later page, the workspace list
of an operator's filter).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Request
from starlette.responses import Response

from modelgrid.console.access import EVERYONE
from modelgrid.console.deps import StateDep, ViewerDep, page_router
from modelgrid.console.templating import render

router = page_router(EVERYONE, prefix="/batches")
PAGE_SIZE = 50


def _when(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


@router.get("")
async def batches_page(
    request: Request,
    state: StateDep,
    viewer: ViewerDep,
    workspace: Annotated[str, Query(max_length=40)] = "",
    after: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    scope = viewer.workspace_scope() or (workspace or None)
    listed = await state.app.batches.list(scope, after=after or None, limit=PAGE_SIZE)
    batches: list[dict[str, Any]] = [
        {**b, "created": _when(b["created_at"]), "done": _when(b["completed_at"])}
        for b in listed["data"]
    ]
    workspaces = await state.control.workspaces.list() if viewer.is_operator else []
    return render(
        request,
        "batches.html",
        viewer,
        page="batches",
        title="Batches",
        batches=batches,
        more=listed["has_more"],
        workspace=workspace,
        workspaces=workspaces,
    )


__all__ = ["router"]
