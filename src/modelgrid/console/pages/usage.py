"""Usage: a table of usage per (day, workspace, key, model, region, currency) filtered by
workspace, key, model, region and a range of days (UTC); **Export CSV** with the same
filters (every line, exact integers, streamed: ``tenancy.usage_export``); a workspace's
**invoice** of a month (``tenancy.billing.invoice``), shown and downloadable as CSV.

Who sees what: an operator every workspace (filter by any), a workspace member its
workspace, a key holder its own key's lines (and no invoice: that is the workspace's).
SQL: the table is one statement over the day roll-ups (``usage_reports.usage_table``), plus
the workspace list of an operator's filter; the CSV one (streamed); the invoice two (the
workspace, its month's sums).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from modelgrid.console.access import EVERYONE, MEMBERS, Viewer
from modelgrid.console.deps import StateDep, ViewerDep, page_router, require
from modelgrid.console.pages.overview import scope_of
from modelgrid.console.templating import render
from modelgrid.core.errors import InvalidRequestError
from modelgrid.tenancy import billing, usage_export, usage_reports

router = page_router(EVERYONE, prefix="/usage")
TABLE_LINES = 500
"""Lines the page shows (the CSV has all of them)."""

Text = Annotated[str, Query(max_length=200)]


def _days(first_day: date | None, last_day: date | None) -> tuple[date, date]:
    """The range (default: the last 7 days through today, UTC). Raises: InvalidRequestError."""
    today = datetime.now(UTC).date()
    last = last_day or today
    first = first_day or last - timedelta(days=6)
    if last < first:
        raise InvalidRequestError("last_day is before first_day.", param="last_day")
    if (last - first).days + 1 > usage_export.MAX_DAYS:
        raise InvalidRequestError(
            f"at most {usage_export.MAX_DAYS} days at once.", param="first_day"
        )
    return first, last


def _filters(viewer: Viewer, workspace: str, key: str) -> tuple[str | None, str | None]:
    """(workspace id, key id) of the table and the CSV: the viewer's scope, then the key
    filter (an id, or the ``mg-<id>`` prefix the pages show)."""
    workspace_id, key_id = scope_of(viewer, workspace)
    return workspace_id, key_id or (key.strip().removeprefix("mg-") or None)


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """The usage page's and the CSV's filters: as typed (echoed in the form) and as read
    (the viewer's scope applied, the default range filled in)."""

    workspace: str
    key: str
    model: str
    region: str
    first_day: date
    last_day: date
    workspace_id: str | None
    api_key_id: str | None

    def reads(self) -> dict[str, Any]:
        """The keyword arguments of ``usage_table`` and ``usage_csv``."""
        return {
            "first_day": self.first_day,
            "last_day": self.last_day,
            "workspace_id": self.workspace_id,
            "api_key_id": self.api_key_id,
            "model": self.model or None,
            "region": self.region or None,
        }


async def usage_query(
    viewer: ViewerDep,
    workspace: Annotated[str, Query(max_length=40)] = "",
    key: Annotated[str, Query(max_length=40)] = "",
    model: Text = "",
    region: Annotated[str, Query(max_length=64)] = "",
    first_day: date | None = None,
    last_day: date | None = None,
) -> UsageQuery:
    """Raises: InvalidRequestError (``_days``)."""
    first, last = _days(first_day, last_day)
    workspace_id, key_id = _filters(viewer, workspace, key)
    return UsageQuery(workspace, key, model, region, first, last, workspace_id, key_id)


QueryDep = Annotated[UsageQuery, Depends(usage_query)]


@router.get("")
async def usage_page(request: Request, state: StateDep, viewer: ViewerDep, q: QueryDep) -> Response:
    lines = await usage_reports.usage_table(state.app.sessions, **q.reads(), limit=TABLE_LINES + 1)
    more = len(lines) > TABLE_LINES
    lines = lines[:TABLE_LINES]
    totals: dict[str, list[int]] = {}
    for ln in lines:
        t = totals.setdefault(ln.currency, [0] * 6)
        for i, v in enumerate(
            (
                ln.requests,
                ln.errors,
                ln.prompt_tokens,
                ln.cached_tokens,
                ln.completion_tokens,
                ln.cost_micros,
            )
        ):
            t[i] += v
    workspaces = await state.control.workspaces.list() if viewer.is_operator else []
    query = request.url.query
    return render(
        request,
        "usage.html",
        viewer,
        page="usage",
        title="Usage",
        lines=lines,
        more=more,
        totals=dict(sorted(totals.items())),
        workspaces=workspaces,
        workspace=q.workspace,
        key=q.key,
        model=q.model,
        region=q.region,
        first_day=q.first_day,
        last_day=q.last_day,
        query=query,
        month=f"{q.last_day:%Y-%m}",
        may_invoice=viewer.access in MEMBERS,
    )


@router.get("/export.csv")
async def export_csv(state: StateDep, q: QueryDep) -> Response:
    chunks = await usage_export.usage_csv(state.app.sessions, **q.reads())
    name = f"usage-{q.first_day.isoformat()}-{q.last_day.isoformat()}.csv"
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


def _invoice_workspace(viewer: Viewer, workspace: str) -> str:
    require(viewer, MEMBERS)
    if viewer.is_operator:
        return workspace.strip() or viewer.workspace_id
    return viewer.workspace_id


@router.get("/invoice")
async def invoice_page(
    request: Request,
    state: StateDep,
    viewer: ViewerDep,
    month: Annotated[str, Query(max_length=7)] = "",
    workspace: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    ws = _invoice_workspace(viewer, workspace)
    month = month or f"{datetime.now(UTC):%Y-%m}"
    inv = await billing.invoice(state.app.sessions, ws, month)
    viewer.check_workspace(inv.workspace_id)
    workspaces = await state.control.workspaces.list() if viewer.is_operator else []
    return render(
        request,
        "usage_invoice.html",
        viewer,
        page="usage",
        title=f"Invoice {inv.month} · {inv.workspace_name}",
        invoice=inv,
        workspaces=workspaces,
    )


@router.get("/invoice.csv")
async def invoice_csv(
    state: StateDep,
    viewer: ViewerDep,
    month: Annotated[str, Query(max_length=7)] = "",
    workspace: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    ws = _invoice_workspace(viewer, workspace)
    inv = await billing.invoice(state.app.sessions, ws, month or f"{datetime.now(UTC):%Y-%m}")
    viewer.check_workspace(inv.workspace_id)
    name = f"invoice-{inv.workspace_id}-{inv.month}.csv"
    return Response(
        billing.invoice_csv(inv),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


__all__ = ["router"]
