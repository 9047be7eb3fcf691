"""Overview: requests, tokens, spend, error rate and TTFT p50/p95 over time, per minute, hour
or day, optionally split by model or region; charts as server-rendered SVG
(``console.charts``), refreshed by htmx (the range picker, and every 10 s) without a page
reload.

Who sees what: an operator everything (or one workspace), a workspace member its workspace,
a key holder its own key. SQL: one statement (``usage_reports.overview`` over the roll-ups),
plus the workspace list of an operator's filter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Query, Request
from markupsafe import Markup
from starlette.responses import Response

from modelgrid.console import charts
from modelgrid.console.access import EVERYONE, Viewer
from modelgrid.console.deps import StateDep, ViewerDep, page_router
from modelgrid.console.templating import render
from modelgrid.core.errors import InvalidRequestError
from modelgrid.storage import rollups
from modelgrid.tenancy import usage_reports
from modelgrid.tenancy.usage_reports import SeriesPoint

router = page_router(EVERYONE, prefix="/overview")


@dataclass(frozen=True, slots=True)
class Range:
    """A range the picker offers: its span and the roll-up it reads."""

    label: str
    span: timedelta
    granularity: str
    label_format: str


RANGES: dict[str, Range] = {  # hours beyond 3 days read too many roll-up rows (bench/RESULTS.md)
    "1h": Range("last hour", timedelta(hours=1), "minute", "%H:%M"),
    "24h": Range("last 24 hours", timedelta(hours=24), "hour", "%H:%M"),
    "3d": Range("last 3 days", timedelta(days=3), "hour", "%m-%d %H:00"),
    "7d": Range("last 7 days", timedelta(days=7), "day", "%m-%d"),
    "30d": Range("last 30 days", timedelta(days=30), "day", "%m-%d"),
}
CHART_TITLES = {
    "requests": "Requests",
    "tokens": "Tokens (prompt + completion)",
    "spend": "Spend",
    "errors": "Error rate (%)",
    "p50": "TTFT p50 (ms)",
    "p95": "TTFT p95 (ms)",
}
_COUNTED = ("requests", "tokens", "spend")  # a bucket without rows is 0; other metrics: no data
STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def scope_of(viewer: Viewer, workspace: str) -> tuple[str | None, str | None]:
    """(workspace id, key id) a viewer's usage reads are confined to: an operator's filter
    (or everything), a member's workspace, a key holder's key."""
    if viewer.access == "key":
        return viewer.workspace_id, viewer.key_id
    return viewer.workspace_scope() or (workspace or None), None


def buckets(now: datetime, r: Range) -> list[datetime]:
    """The bucket starts of range ``r`` ending with the bucket holding ``now``, oldest
    first."""
    step = STEP[r.granularity]
    last = rollups.bucket_start(now, r.granularity)
    count = max(1, round(r.span / step))
    return [last - step * (count - 1 - i) for i in range(count)]


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over the range for one group (``all`` when not split)."""

    group: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_micros: dict[str, int]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def build(
    points: list[SeriesPoint], starts: list[datetime], r: Range
) -> tuple[dict[str, Markup], list[Totals], dict[str, str]]:
    """The charts (by metric), per-group totals of ``points`` over ``starts``, and the
    charts' titles (by metric; spend's names the currency it is charted in)."""
    index = {b: i for i, b in enumerate(starts)}
    groups = sorted({p.group or "all" for p in points}) or ["all"]
    n = len(starts)
    series: dict[str, dict[str, list[float | None]]] = {
        metric: {g: [0.0 if metric in _COUNTED else None] * n for g in groups}
        for metric in ("requests", "tokens", "spend", "errors", "p50", "p95")
    }
    # Spend is charted in one currency (the one most spent); amounts in others are never
    # added to it: they stay apart, exact, in the totals.
    spent: dict[str, int] = {}
    for p in points:
        for cur, micros in p.cost_micros.items():
            spent[cur] = spent.get(cur, 0) + micros
    currency = max(sorted(spent), key=lambda c: spent[c], default="")
    titles = dict(CHART_TITLES)
    if currency:
        others = " (other currencies: see the totals)" if len(spent) > 1 else ""
        titles["spend"] = f"Spend ({currency}){others}"
    sums: dict[str, list[int]] = {g: [0, 0, 0, 0] for g in groups}
    costs: dict[str, dict[str, int]] = {g: {} for g in groups}
    for p in points:
        g = p.group or "all"
        s = sums[g]
        s[0] += p.requests
        s[1] += p.errors
        s[2] += p.prompt_tokens
        s[3] += p.completion_tokens
        for cur, micros in p.cost_micros.items():
            costs[g][cur] = costs[g].get(cur, 0) + micros
        i = index.get(p.bucket_start)
        if i is None:
            continue
        series["requests"][g][i] = p.requests
        series["tokens"][g][i] = p.prompt_tokens + p.completion_tokens
        series["spend"][g][i] = p.cost_micros.get(currency, 0) / 1_000_000
        series["errors"][g][i] = p.error_rate * 100 if p.requests else None
        series["p50"][g][i] = p.ttft_p50_ms
        series["p95"][g][i] = p.ttft_p95_ms
    labels = [b.strftime(r.label_format) for b in starts]
    formats: dict[str, Callable[[float], str]] = {"errors": lambda v: f"{v:.3g}%"}
    drawn = {
        metric: charts.line_chart(
            labels,
            [charts.Series(g, values) for g, values in by_group.items()],
            title=titles[metric],
            y_format=formats.get(metric, charts.compact),
            chart_id=f"chart-{metric}",
        )
        for metric, by_group in series.items()
    }
    totals = [
        Totals(g, sums[g][0], sums[g][1], sums[g][2], sums[g][3], dict(sorted(costs[g].items())))
        for g in groups
    ]
    return drawn, totals, titles


@router.get("")
async def overview_page(
    request: Request,
    state: StateDep,
    viewer: ViewerDep,
    range: Annotated[str, Query(max_length=8)] = "24h",
    by: Annotated[str, Query(max_length=8)] = "",
    workspace: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    r = RANGES.get(range)
    if r is None:
        raise InvalidRequestError(
            f"range must be one of {', '.join(RANGES)}, not '{range}'.", param="range"
        )
    if by not in ("", "model", "region"):
        raise InvalidRequestError(f"by must be model or region, not '{by}'.", param="by")
    workspace_id, key_id = scope_of(viewer, workspace)
    starts = buckets(datetime.now(UTC), r)
    points = await usage_reports.overview(
        state.app.sessions,
        start=starts[0],
        end=starts[-1] + STEP[r.granularity],
        granularity=r.granularity,
        workspace_id=workspace_id,
        api_key_id=key_id,
        by=by or None,
    )
    drawn, totals, titles = build(points, starts, r)
    workspaces = await state.control.workspaces.list() if viewer.is_operator else []
    return render(
        request,
        "overview.html",
        viewer,
        page="overview",
        title="Overview",
        partial="overview_charts.html",
        charts=drawn,
        chart_titles=titles,
        totals=totals,
        ranges=RANGES,
        range=range,
        by=by,
        workspace=workspace,
        workspaces=workspaces,
        granularity=r.granularity,
        palette=charts.PALETTE,
        updated=datetime.now(UTC),
    )


__all__ = ["RANGES", "Totals", "buckets", "build", "router", "scope_of"]
