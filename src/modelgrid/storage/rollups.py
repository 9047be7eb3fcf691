"""Usage roll-ups: the ledger summed per minute, hour and day as it is written.

Two tables: ``usage_rollups`` per (granularity, bucket, workspace, key, model, region,
currency, batch or not, status class), and ``usage_workspace_rollups``, the same without the
key (what the overview, invoices and budgets read: several times fewer rows).

Every ledger insert (``repositories.insert_usage``: the usage writer's flush, a batch
line's answer) adds the rows it actually inserted to both in the same transaction: one
``INSERT … ON CONFLICT DO UPDATE`` a table adding the deltas, run once per distinct
(granularity, bucket, dimensions) of the batch (positional tuples straight to the driver's
``executemany``: SQLAlchemy's per-row parameter processing was most of the flush's CPU). A row the ledger already held (a retried or
replayed batch: the insert is ``ON CONFLICT DO NOTHING``) is not returned by the insert's
``RETURNING`` and adds nothing, so every ledger row counts exactly once.

The deltas are upserted sorted by key, so two gateways flushing at once lock the rows they
share in the same order (no deadlock on PostgreSQL).

``rebuild()`` recomputes both tables from the ledger in SQL (minute buckets from the rows,
hours from the minutes, days from the hours, the workspace table from the keyed one):
migrations 0007 and 0009's backfills and ``modelgrid db rebuild-rollups``.

An error is a status >= 400 other than 499 (the client went away). Buckets are UTC.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from modelgrid.storage.models import (
    ROLLUP_DIMENSIONS,
    ROLLUP_MEASURES,
    TTFT_BOUNDS_MS,
    TTFT_BUCKET_COLUMNS,
    WORKSPACE_ROLLUP_DIMENSIONS,
    usage_rollups,
    workspace_rollups,
)

GRANULARITIES = ("minute", "hour", "day")
_N = len(ROLLUP_MEASURES)
_HIST0 = ROLLUP_MEASURES.index(TTFT_BUCKET_COLUMNS[0])


def is_error(status: int) -> bool:
    return status >= 400 and status != 499


def ttft_bucket(ttft_ms: int) -> int:
    """Index of the histogram bucket holding ``ttft_ms``."""
    for i, bound in enumerate(TTFT_BOUNDS_MS):
        if ttft_ms <= bound:
            return i
    return len(TTFT_BOUNDS_MS)


def utc(ts: datetime) -> datetime:
    """``ts`` in UTC (a naive time is taken as UTC, as the SQLite ledger stores it)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def bucket_start(ts: datetime, granularity: str) -> datetime:
    """Start (UTC) of the ``granularity`` bucket holding ``ts``."""
    t = utc(ts).replace(second=0, microsecond=0)
    if granularity == "minute":
        return t
    if granularity == "hour":
        return t.replace(minute=0)
    if granularity == "day":
        return t.replace(hour=0, minute=0)
    raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")


def deltas(
    rows: Iterable[Mapping[str, Any]],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The roll-up increments of ledger ``rows``: for ``usage_rollups`` and for
    ``usage_workspace_rollups``, one tuple per (granularity, bucket, dimensions) — the
    table's dimensions then ``ROLLUP_MEASURES`` — sorted by key."""
    minutes: dict[tuple[Any, ...], list[int]] = {}  # per row: one add, at the finest level
    empty_hist = [0] * (_N - _HIST0)
    for r in rows:
        status = int(r["status"])
        ttft = r.get("ttft_ms")
        hist = list(empty_hist)
        if ttft is not None:
            hist[ttft_bucket(ttft)] = 1
        vec = [
            1,
            int(is_error(status)),
            r.get("prompt_tokens") or 0,
            r.get("cached_tokens") or 0,
            r.get("completion_tokens") or 0,
            r.get("cost_micros") or 0,
            ttft or 0,
            0 if ttft is None else 1,
            *hist,
        ]
        key = (
            utc(r["created_at"]).replace(second=0, microsecond=0),
            r.get("workspace_id") or "",
            r.get("api_key_id") or "",
            r["model"],
            r.get("region") or "",
            r.get("currency") or "",
            0 if r.get("batch_id") is None else 1,
            status // 100,
        )
        a = minutes.get(key)
        minutes[key] = vec if a is None else list(map(operator.add, a, vec))
    acc: dict[tuple[Any, ...], list[int]] = {}
    ws_acc: dict[tuple[Any, ...], list[int]] = {}
    for (minute, ws, key_id, *rest), vec in minutes.items():
        for bucket in (
            ("day", minute.replace(hour=0, minute=0)),
            ("hour", minute.replace(minute=0)),
            ("minute", minute),
        ):
            for table, k in ((acc, (*bucket, ws, key_id, *rest)), (ws_acc, (*bucket, ws, *rest))):
                a = table.get(k)
                table[k] = vec if a is None else list(map(operator.add, a, vec))
    return (
        [(*k, *v) for k, v in sorted(acc.items())],
        [(*k, *v) for k, v in sorted(ws_acc.items())],
    )


@cache
def _upsert_sql(dialect: str, table: str) -> str:
    """``INSERT … ON CONFLICT DO UPDATE`` adding the measures, with the driver's positional
    parameters (sent by ``exec_driver_sql``: no per-row work in SQLAlchemy)."""
    dims = ROLLUP_DIMENSIONS if table == usage_rollups.name else WORKSPACE_ROLLUP_DIMENSIONS
    cols = (*dims, *ROLLUP_MEASURES)
    marks = ", ".join(f"${i}" if dialect == "postgresql" else "?" for i in range(1, len(cols) + 1))
    adds = ", ".join(f"{m} = {table}.{m} + excluded.{m}" for m in ROLLUP_MEASURES)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) "
        f"ON CONFLICT ({', '.join(dims)}) DO UPDATE SET {adds}"
    )


def _sqlite_time(params: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Bucket starts as SQLAlchemy writes a SQLite ``DATETIME`` (the driver is given text)."""
    return [(p[0], f"{p[1]:%Y-%m-%d %H:%M:%S}.000000", *p[2:]) for p in params]


def dialect_of(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind else "sqlite"


async def add(session: AsyncSession, rows: Iterable[Mapping[str, Any]]) -> int:
    """Add ledger ``rows`` (just inserted, each once) to both roll-up tables, in the
    session's transaction; returns the number of roll-up rows touched."""
    by_key, by_workspace = deltas(rows)
    dialect = dialect_of(session)
    conn = await session.connection()
    for table, params in ((usage_rollups, by_key), (workspace_rollups, by_workspace)):
        if params:
            if dialect != "postgresql":
                params = _sqlite_time(params)
            await conn.exec_driver_sql(_upsert_sql(dialect, table.name), params)
    return len(by_key) + len(by_workspace)


# --- rebuild from the ledger -----------------------------------------------------------------

_COLS = ", ".join((*ROLLUP_DIMENSIONS, *ROLLUP_MEASURES))


def _truncate(dialect: str, granularity: str, column: str) -> str:
    if dialect == "postgresql":
        return f"date_trunc('{granularity}', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    # SQLAlchemy stores a SQLite DATETIME as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC here)
    fmt = {"minute": "%H:%M:00", "hour": "%H:00:00", "day": "00:00:00"}[granularity]
    return f"strftime('%Y-%m-%d {fmt}.000000', {column})"


def rebuild_statements(dialect: str) -> list[str]:
    """SQL that empties ``usage_rollups`` and recomputes it from ``usage_records``."""
    hist = []
    low: int | None = None
    for bound in (*TTFT_BOUNDS_MS, None):
        conds = ["ttft_ms IS NOT NULL"]
        if low is not None:
            conds.append(f"ttft_ms > {low}")
        if bound is not None:
            conds.append(f"ttft_ms <= {bound}")
        hist.append(f"SUM(CASE WHEN {' AND '.join(conds)} THEN 1 ELSE 0 END)")
        low = bound
    minute = f"""
        INSERT INTO usage_rollups ({_COLS})
        SELECT 'minute', {_truncate(dialect, "minute", "created_at")},
               COALESCE(workspace_id, ''), COALESCE(api_key_id, ''), model,
               COALESCE(region, ''), COALESCE(currency, ''),
               CASE WHEN batch_id IS NULL THEN 0 ELSE 1 END, status / 100,
               COUNT(*), SUM(CASE WHEN status >= 400 AND status <> 499 THEN 1 ELSE 0 END),
               SUM(prompt_tokens), SUM(cached_tokens), SUM(completion_tokens),
               SUM(cost_micros), COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms),
               {", ".join(hist)}
        FROM usage_records
        GROUP BY 2, 3, 4, 5, 6, 7, 8, 9"""
    sums = ", ".join(f"SUM({m})" for m in ROLLUP_MEASURES)
    dims = ", ".join(ROLLUP_DIMENSIONS[2:])
    coarser = [
        f"""
        INSERT INTO usage_rollups ({_COLS})
        SELECT '{to}', {_truncate(dialect, to, "bucket_start")}, {dims}, {sums}
        FROM usage_rollups WHERE granularity = '{src}'
        GROUP BY 2, {dims}"""
        for src, to in (("minute", "hour"), ("hour", "day"))
    ]
    lock = ["LOCK TABLE usage_records IN SHARE MODE"] if dialect == "postgresql" else []
    return [*lock, "DELETE FROM usage_rollups", minute, *coarser]


def workspace_rebuild_statements() -> list[str]:
    """SQL that empties ``usage_workspace_rollups`` and recomputes it from ``usage_rollups``
    (the keys of each workspace added together)."""
    dims = ", ".join(WORKSPACE_ROLLUP_DIMENSIONS)
    cols = ", ".join((*WORKSPACE_ROLLUP_DIMENSIONS, *ROLLUP_MEASURES))
    sums = ", ".join(f"SUM({m})" for m in ROLLUP_MEASURES)
    return [
        "DELETE FROM usage_workspace_rollups",
        f"INSERT INTO usage_workspace_rollups ({cols}) "
        f"SELECT {dims}, {sums} FROM usage_rollups GROUP BY {dims}",
    ]


async def rebuild(session: AsyncSession) -> int:
    """Recompute both roll-up tables from the ledger inside the session's transaction (on
    PostgreSQL, ledger inserts wait for it); returns the number of ``usage_rollups`` rows."""
    for sql in (*rebuild_statements(dialect_of(session)), *workspace_rebuild_statements()):
        await session.execute(text(sql))
    count = await session.execute(text("SELECT COUNT(*) FROM usage_rollups"))
    return int(count.scalar_one())


__all__ = [
    "GRANULARITIES",
    "add",
    "bucket_start",
    "deltas",
    "dialect_of",
    "is_error",
    "rebuild",
    "rebuild_statements",
    "ttft_bucket",
    "utc",
    "workspace_rebuild_statements",
]
