"""Request log: search a request by id across the whole ledger (a primary-key lookup, not the
page on screen), and a keyset-paged list, newest first, filtered by status class, model and
region (``tenancy.request_log``).

Columns: time, request id, status, latency (the request's total time), TTFT, tokens, cost,
region and replica (rows written before the ledger recorded replicas show none). Never the
prompt or the answer: the ledger holds neither.

Who sees what: an operator every request (or one workspace's), a workspace member its
workspace's, a key holder its own key's; another's request id is "not found". SQL: the page
(plus the anchor row of a later page, the workspace list of an operator's filter); a search
is one primary-key lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from starlette.responses import Response

from modelgrid.console.access import EVERYONE
from modelgrid.console.deps import StateDep, ViewerDep, page_router
from modelgrid.console.pages.overview import scope_of
from modelgrid.console.templating import render
from modelgrid.core.errors import NotFoundError
from modelgrid.tenancy import request_log

router = page_router(EVERYONE, prefix="/requests")
PAGE_SIZE = 50


@router.get("")
async def requests_page(
    request: Request,
    state: StateDep,
    viewer: ViewerDep,
    id: Annotated[str, Query(max_length=200)] = "",
    status: Annotated[str, Query(max_length=8)] = "",
    model: Annotated[str, Query(max_length=200)] = "",
    region: Annotated[str, Query(max_length=64)] = "",
    workspace: Annotated[str, Query(max_length=40)] = "",
    before: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    workspace_id, key_id = scope_of(viewer, workspace)
    found = None
    missing = ""
    rows: list[request_log.LoggedRequest] = []
    more = False
    if id.strip():
        try:
            found = await request_log.find(
                state.app.sessions, id, workspace_id=workspace_id, api_key_id=key_id
            )
        except NotFoundError as exc:
            missing = exc.message
        rows = [found] if found is not None else []
    else:
        rows, more = await request_log.page(
            state.app.sessions,
            workspace_id=workspace_id,
            api_key_id=key_id,
            status=status or None,
            model=model or None,
            region=region or None,
            before=before or None,
            limit=PAGE_SIZE,
        )
    workspaces = await state.control.workspaces.list() if viewer.is_operator else []
    return render(
        request,
        "requests.html",
        viewer,
        page="requests",
        title="Request log",
        status=404 if missing else 200,
        rows=rows,
        more=more,
        searched=id.strip(),
        missing=missing,
        filters={"status": status, "model": model, "region": region, "workspace": workspace},
        statuses=request_log.STATUS_CLASSES,
        workspaces=workspaces,
        paged=bool(before),
    )


__all__ = ["router"]
