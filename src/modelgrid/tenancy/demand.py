"""The usage ledger read as demand (a read model for the planner, framework-free).

For one calendar month (UTC): online requests (batch lines run on idle capacity and are left
out, as are embeddings) counted by (workspace, region, model, hour of day); samples of their
prompt tokens not served from a prefix cache and of their output tokens, per model; the
squared coefficient of variation of the gaps between consecutive requests of each
(region, model) within the same clock hour (how bursty arrivals are: 1 for Poisson); and
each workspace's residency rules.

A row is written when its request ends (``created_at``); its arrival is ``created_at -
total_ms``, and the hours and gaps are of arrivals: the gaps between completions are those
of the queue's departures, which a busy replica smooths to its service times (a burst of
ten requests read as ten evenly spaced ones).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from modelgrid.storage import repositories as repo
from modelgrid.storage.models import UsageRecord, Workspace
from modelgrid.tenancy.billing import month_bounds
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.timings import arrival


@dataclass(frozen=True, slots=True)
class WorkspaceRules:
    name: str
    home_region: str
    allowed_regions: tuple[str, ...] | None
    allowed_jurisdictions: tuple[str, ...] | None


@dataclass
class LedgerDemand:
    """See the module docstring.

    Attributes:
        month: ``YYYY-MM``.
        days: Days in the month (to turn counts per hour of day into rates).
        counts: Requests by (workspace name, region, model, hour of day).
        prompt_tokens / output_tokens: Samples per model (at most ``samples`` each).
        gap_scv: Squared coefficient of variation of arrival gaps by (region, model).
        workspaces: Residency rules of every workspace.
    """

    month: str
    days: int
    counts: dict[tuple[str, str, str, int], int] = field(default_factory=dict)
    prompt_tokens: dict[str, list[int]] = field(default_factory=dict)
    output_tokens: dict[str, list[int]] = field(default_factory=dict)
    gap_scv: dict[tuple[str, str], float] = field(default_factory=dict)
    workspaces: list[WorkspaceRules] = field(default_factory=list)


class _Gaps:
    """Running moments of the gaps of one stream (gaps across clock hours left out)."""

    __slots__ = ("last", "n", "s1", "s2")

    def __init__(self) -> None:
        self.last: datetime | None = None
        self.n, self.s1, self.s2 = 0, 0.0, 0.0

    def add(self, at: datetime) -> None:
        last, self.last = self.last, at
        if last is None or last.replace(minute=0, second=0, microsecond=0) != at.replace(
            minute=0, second=0, microsecond=0
        ):
            return
        gap = (at - last).total_seconds()
        self.n += 1
        self.s1 += gap
        self.s2 += gap * gap

    def scv(self) -> float | None:
        if self.n < 20 or self.s1 <= 0:
            return None
        mean = self.s1 / self.n
        return max(0.0, self.s2 / self.n - mean * mean) / (mean * mean)


def _reservoir(sample: list[int], seen: int, value: int, size: int, rng: random.Random) -> None:
    if len(sample) < size:
        sample.append(value)
    else:
        k = rng.randrange(seen)
        if k < size:
            sample[k] = value


async def read_demand(
    sessions: Sessions, month: str, *, samples: int = 2000, default_region: str = "local"
) -> LedgerDemand:
    """The month's demand (see the module docstring): the requests that ended in it; rows
    without a region count in ``default_region``.

    Raises:
        InvalidRequestError: ``month`` is not ``YYYY-MM``.
    """
    start, end = month_bounds(month)
    days = (end - start).days
    out = LedgerDemand(month, days)
    rng = random.Random(0)
    seen: dict[str, int] = {}
    gaps: dict[tuple[str, str], _Gaps] = {}
    async with sessions() as session:
        names = {w.id: w for w in await repo.list_workspaces(session)}
        out.workspaces = [
            WorkspaceRules(
                w.name,
                w.home_region,
                None if w.allowed_regions is None else tuple(w.allowed_regions),
                None if w.allowed_jurisdictions is None else tuple(w.allowed_jurisdictions),
            )
            for w in names.values()
        ]
        stmt = (
            select(
                UsageRecord.created_at,
                UsageRecord.workspace_id,
                UsageRecord.region,
                UsageRecord.model,
                UsageRecord.prompt_tokens,
                UsageRecord.cached_tokens,
                UsageRecord.completion_tokens,
                UsageRecord.total_ms,
            )
            .where(UsageRecord.created_at >= start, UsageRecord.created_at < end)
            .where(UsageRecord.batch_id.is_(None))
            .where(UsageRecord.endpoint.not_like("%embedding%"))
        )
        rows: Sequence[tuple[datetime, str | None, str | None, str, int, int, int, int]]
        rows = (await session.execute(stmt)).all()
    arrivals = sorted(
        ((arrival(row[0], row[7]), row[1:7]) for row in rows),
        key=lambda item: item[0],
    )
    for at, (ws_id, region, model, prompt, cached, completion) in arrivals:
        ws: Workspace | None = names.get(ws_id or "")
        key = (ws.name if ws else (ws_id or "unknown"), region or default_region, model, at.hour)
        out.counts[key] = out.counts.get(key, 0) + 1
        n = seen[model] = seen.get(model, 0) + 1
        _reservoir(
            out.prompt_tokens.setdefault(model, []), n, max(1, prompt - cached), samples, rng
        )
        _reservoir(out.output_tokens.setdefault(model, []), n, max(1, completion), samples, rng)
        gaps.setdefault((key[1], model), _Gaps()).add(at)
    out.gap_scv = {k: v for k, g in gaps.items() if (v := g.scv()) is not None}
    return out


__all__ = ["LedgerDemand", "WorkspaceRules", "read_demand"]
