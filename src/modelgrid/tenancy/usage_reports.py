"""The console's usage reads, from the roll-ups (``storage.rollups``), one SQL statement each.

- ``overview``: requests, tokens, spend, error rate and TTFT p50/p95 per time bucket, for
  everyone, a workspace or a key, optionally split by model or region.
- ``usage_table``: sums per (day, workspace, key, model, region, currency) over a range of
  days, filtered by any of them.
- ``key_usage``: one key's daily series per model (what a key holder sees of their own key).
- The invoice of a month is ``tenancy.billing.invoice`` (it reads the day roll-ups too).

Reads without a key read ``usage_workspace_rollups`` (the keys added together, several
times fewer rows); a key's, and the usage table (which lists keys), ``usage_rollups``.
A page never aggregates ledger rows: the finest roll-up (minute) over an hour, or the day
roll-ups over a month, are a few thousand rows however many requests they hold. TTFT
percentiles come from the fixed histogram (``storage.models.TTFT_BOUNDS_MS``), linearly
interpolated inside a bucket as Prometheus' ``histogram_quantile`` does: within a bucket's
width of the exact value, never beyond the last finite bound (10 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, String, func, literal, select, union_all

from modelgrid.core.errors import InvalidRequestError
from modelgrid.storage import rollups
from modelgrid.storage.models import (
    TTFT_BOUNDS_MS,
    TTFT_BUCKET_COLUMNS,
    usage_rollups,
    workspace_rollups,
)
from modelgrid.tenancy.lookup import Sessions

_STEP = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
_UNION_MAX = 400
MAX_BUCKETS = 2000
"""Longest series ``overview`` returns (e.g. 33 hours of minutes, 83 days of hours)."""

_SUMS = ("requests", "errors", "prompt_tokens", "cached_tokens", "completion_tokens")


def ttft_quantile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of TTFT in ms from the roll-ups' bucket counts (None: no
    TTFT recorded)."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(histogram):
        if count and seen + count >= rank:
            if i == len(TTFT_BOUNDS_MS):
                return float(TTFT_BOUNDS_MS[-1])
            low = 0 if i == 0 else TTFT_BOUNDS_MS[i - 1]
            return low + (TTFT_BOUNDS_MS[i] - low) * (rank - seen) / count
        seen += count
    return float(TTFT_BOUNDS_MS[-1])


@dataclass(slots=True)
class SeriesPoint:
    """One bucket of the overview (of one model or region when split)."""

    bucket_start: datetime
    group: str | None
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: dict[str, int] = field(default_factory=dict)  # by currency ('' unpriced)
    ttft_sum_ms: int = 0
    ttft_count: int = 0
    ttft_histogram: list[int] = field(default_factory=lambda: [0] * len(TTFT_BUCKET_COLUMNS))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def ttft_mean_ms(self) -> float | None:
        return self.ttft_sum_ms / self.ttft_count if self.ttft_count else None

    @property
    def ttft_p50_ms(self) -> float | None:
        return ttft_quantile(self.ttft_histogram, 0.5)

    @property
    def ttft_p95_ms(self) -> float | None:
        return ttft_quantile(self.ttft_histogram, 0.95)


def _aware(ts: Any) -> datetime:
    """A bucket start as read back (SQLite: naive, or the stored text) in UTC."""
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return rollups.utc(ts)


async def overview(
    sessions: Sessions,
    *,
    start: datetime,
    end: datetime,
    granularity: str = "hour",
    workspace_id: str | None = None,
    api_key_id: str | None = None,
    by: str | None = None,
) -> list[SeriesPoint]:
    """The usage series over ``[start, end)``, widened to whole buckets.

    Args:
        granularity: ``minute``, ``hour`` or ``day``.
        workspace_id / api_key_id: Narrow to a workspace or a key (ids).
        by: ``model`` or ``region`` to split each bucket by it; None for one point a bucket.

    Returns:
        Points ordered by bucket then group; buckets without usage are absent.

    Raises:
        InvalidRequestError: an unknown granularity or ``by``, ``end`` not after ``start``,
            more than ``MAX_BUCKETS`` buckets.
    """
    if granularity not in _STEP:
        raise InvalidRequestError(
            f"granularity must be minute, hour or day, not '{granularity}'.", param="granularity"
        )
    if by not in (None, "model", "region"):
        raise InvalidRequestError(f"by must be model or region, not '{by}'.", param="by")
    first = rollups.bucket_start(start, granularity)
    if end <= start:
        raise InvalidRequestError("end must be after start.", param="end")
    if (end - first) / _STEP[granularity] > MAX_BUCKETS:
        raise InvalidRequestError(
            f"at most {MAX_BUCKETS} {granularity}s; choose a coarser granularity.",
            param="granularity",
        )
    r = (workspace_rollups if api_key_id is None else usage_rollups).c
    group: Any = r[by] if by is not None else None
    keys = [r.bucket_start, *([group] if by is not None else []), r.currency]
    stmt = (
        select(
            *keys,
            *(func.sum(r[c]) for c in _SUMS),
            func.sum(r.cost_micros),
            func.sum(r.ttft_sum_ms),
            func.sum(r.ttft_count),
            *(func.sum(r[c]) for c in TTFT_BUCKET_COLUMNS),
        )
        .where(r.granularity == granularity, r.bucket_start >= first, r.bucket_start < end)
        .group_by(*keys)
        .order_by(*keys)
    )
    if workspace_id is not None:
        stmt = stmt.where(r.workspace_id == workspace_id)
    if api_key_id is not None:
        stmt = stmt.where(r.api_key_id == api_key_id)
    async with sessions() as session:
        rows = (await session.execute(stmt)).all()
    points: dict[tuple[datetime, str | None], SeriesPoint] = {}
    width = 1 if by is not None else 0
    for row in rows:
        bucket = _aware(row[0])
        g = row[1] if by is not None else None
        currency = row[1 + width]
        v = [int(x or 0) for x in row[2 + width :]]
        p = points.get((bucket, g))
        if p is None:
            p = points[(bucket, g)] = SeriesPoint(bucket, g)
        p.requests += v[0]
        p.errors += v[1]
        p.prompt_tokens += v[2]
        p.cached_tokens += v[3]
        p.completion_tokens += v[4]
        p.cost_micros[currency] = p.cost_micros.get(currency, 0) + v[5]
        p.ttft_sum_ms += v[6]
        p.ttft_count += v[7]
        p.ttft_histogram = [a + b for a, b in zip(p.ttft_histogram, v[8:], strict=True)]
    return list(points.values())


@dataclass(frozen=True, slots=True)
class UsageLine:
    """Sums of one (day, workspace, key, model, region, currency); ``''`` where the ledger
    rows had none (no key, the embedded region, unpriced)."""

    day: date
    workspace_id: str
    api_key_id: str
    model: str
    region: str
    currency: str
    requests: int
    errors: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_micros: int


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_lines_query(
    first_day: date,
    last_day: date,
    *,
    workspace_id: str | None = None,
    api_key_id: str | None = None,
    model: str | None = None,
    region: str | None = None,
) -> Select[Any]:
    """The day roll-ups summed per (day, workspace, key, model, region, currency) over
    ``first_day..last_day`` (UTC, both included), filtered by any of the ids given, ordered
    by them: columns ``bucket_start, workspace_id, api_key_id, model, region, currency``, the
    request and token sums, ``cost_micros``. What the usage table and the CSV export read.

    Raises:
        InvalidRequestError: ``last_day`` before ``first_day``.
    """
    if last_day < first_day:
        raise InvalidRequestError("last_day is before first_day.", param="last_day")
    r = usage_rollups.c
    keys = [r.bucket_start, r.workspace_id, r.api_key_id, r.model, r.region, r.currency]
    stmt = (
        select(*keys, *(func.sum(r[c]) for c in _SUMS), func.sum(r.cost_micros))
        .where(
            r.granularity == "day",
            r.bucket_start >= _midnight(first_day),
            r.bucket_start < _midnight(last_day + timedelta(days=1)),
        )
        .group_by(*keys)
        .order_by(*keys)
    )
    for col, value in (
        (r.workspace_id, workspace_id),
        (r.api_key_id, api_key_id),
        (r.model, model),
        (r.region, region),
    ):
        if value is not None:
            stmt = stmt.where(col == value)
    return stmt


async def usage_table(
    sessions: Sessions,
    *,
    first_day: date,
    last_day: date,
    workspace_id: str | None = None,
    api_key_id: str | None = None,
    model: str | None = None,
    region: str | None = None,
    limit: int = 1000,
) -> list[UsageLine]:
    """Usage per (day, workspace, key, model, region, currency) for the days
    ``first_day..last_day`` (UTC, both included), filtered by any of the ids given; ordered
    by day then the ids, at most ``limit`` lines.

    Raises:
        InvalidRequestError: ``last_day`` before ``first_day``, a limit outside 1..10000.
    """
    stmt = day_lines_query(
        first_day,
        last_day,
        workspace_id=workspace_id,
        api_key_id=api_key_id,
        model=model,
        region=region,
    )
    if not 1 <= limit <= 10_000:
        raise InvalidRequestError("limit must be 1 to 10000.", param="limit")
    stmt = stmt.limit(limit)
    async with sessions() as session:
        rows = (await session.execute(stmt)).all()
    return [
        UsageLine(_aware(b).date(), ws, key, m, reg, cur, *(int(x) for x in sums))
        for b, ws, key, m, reg, cur, *sums in rows
    ]


async def key_usage(
    sessions: Sessions, api_key_id: str, *, first_day: date, last_day: date
) -> list[SeriesPoint]:
    """One key's daily usage per model over ``first_day..last_day`` (UTC, both included):
    what the console shows a key holder, who sees no other key's."""
    return await overview(
        sessions,
        start=_midnight(first_day),
        end=_midnight(last_day + timedelta(days=1)),
        granularity="day",
        api_key_id=api_key_id,
        by="model",
    )


async def keys_last_used(sessions: Sessions, key_ids: Sequence[str]) -> dict[str, datetime]:
    """When each of ``key_ids`` was last used: the start (UTC) of its latest minute roll-up,
    so to the minute. Keys never used are absent. One SQL statement: a ``UNION ALL`` of one
    ``max`` per key, each answered from ``ix_usage_rollups_api_key`` without a scan (a
    ``GROUP BY`` would read every minute row of every key)."""
    ids = list(dict.fromkeys(key_ids))
    if not ids:
        return {}
    t = usage_rollups.c
    out: dict[str, datetime] = {}
    async with sessions() as session:
        for i in range(0, len(ids), _UNION_MAX):  # SQLite takes 500 terms in a compound
            parts = [
                select(literal(kid, String(40)), func.max(t.bucket_start)).where(
                    t.api_key_id == kid, t.granularity == "minute"
                )
                for kid in ids[i : i + _UNION_MAX]
            ]
            for kid, last in (await session.execute(union_all(*parts))).all():
                if kid is not None and last is not None:
                    out[kid] = _aware(last)
    return out


__all__ = [
    "MAX_BUCKETS",
    "SeriesPoint",
    "UsageLine",
    "day_lines_query",
    "key_usage",
    "keys_last_used",
    "overview",
    "ttft_quantile",
    "usage_table",
]
