"""Queries over the models, one function per operation; sessions are passed in."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from modelgrid.storage import rollups
from modelgrid.storage.models import (
    ApiKey,
    AuditEntry,
    Price,
    UsageRecord,
    Workspace,
    usage_rollups,
    workspace_rollups,
)


async def get_workspace_by_name(session: AsyncSession, name: str) -> Workspace | None:
    return (
        await session.execute(select(Workspace).where(Workspace.name == name))
    ).scalar_one_or_none()


async def add_workspace(
    session: AsyncSession, workspace_id: str, name: str, **fields: Any
) -> Workspace:
    """Insert a workspace; ``fields`` set other columns (currency, regions, limits)."""
    ws = Workspace(id=workspace_id, name=name, created_at=datetime.now(UTC), **fields)
    session.add(ws)
    await session.flush()
    return ws


async def add_api_key(session: AsyncSession, key: ApiKey) -> ApiKey:
    session.add(key)
    await session.flush()
    return key


async def get_api_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def get_api_key_with_workspace(
    session: AsyncSession, key_id: str
) -> tuple[ApiKey, Workspace] | None:
    """The key and its workspace in one query (the authentication lookup)."""
    stmt = (
        select(ApiKey, Workspace)
        .join(Workspace, Workspace.id == ApiKey.workspace_id)
        .where(ApiKey.id == key_id)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


async def get_api_keys_with_workspaces(
    session: AsyncSession, key_ids: Collection[str]
) -> dict[str, tuple[ApiKey, Workspace]]:
    """Keys by id with their workspaces, in one query (the principal cache's refresh)."""
    stmt = (
        select(ApiKey, Workspace)
        .join(Workspace, Workspace.id == ApiKey.workspace_id)
        .where(ApiKey.id.in_(list(key_ids)))
    )
    return {k.id: (k, ws) for k, ws in (await session.execute(stmt)).all()}


async def list_api_keys(
    session: AsyncSession, *, include_revoked: bool = False, workspace_id: str | None = None
) -> Sequence[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    if workspace_id is not None:
        stmt = stmt.where(ApiKey.workspace_id == workspace_id)
    return (await session.execute(stmt)).scalars().all()


async def count_api_keys(session: AsyncSession, role: str) -> int:
    stmt = select(func.count()).select_from(ApiKey).where(ApiKey.role == role)
    return int((await session.execute(stmt)).scalar_one())


async def revoke_api_key(session: AsyncSession, key_id: str) -> bool:
    """Mark the key revoked; False when no active key has that id (or prefix)."""
    stmt = (
        update(ApiKey)
        .where((ApiKey.id == key_id) | (ApiKey.prefix == key_id))
        .where(ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    result: Any = await session.execute(stmt)
    return bool(result.rowcount)


def _pages(n: int, largest: int = 256) -> list[tuple[int, int]]:
    """``[start, end)`` slices of ``n`` rows, each a power of two long: an insert with
    ``RETURNING`` is one multi-row ``VALUES`` statement per size, and the drivers cache each
    prepared statement (38 MB more RSS over 600 flushes of sizes 1-256 on SQLite), so sizes
    are kept to nine."""
    out = []
    start, size = 0, largest
    while start < n:
        while size > n - start:
            size //= 2
        out.append((start, start + size))
        start += size
    return out


async def insert_usage(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Insert usage rows, ignoring any whose ``request_id`` is already stored (idempotent),
    and add the rows actually inserted to the roll-ups (``storage.rollups``) in the same
    transaction; returns how many were inserted.

    Its ``RETURNING`` names the rows it inserted (SQLAlchemy sends multi-row ``VALUES``), in
    pages whose sizes are powers of two (``_pages``)."""
    if not rows:
        return 0
    insert = pg_insert if rollups.dialect_of(session) == "postgresql" else sqlite_insert
    stmt = (
        insert(UsageRecord)
        .on_conflict_do_nothing(index_elements=["request_id"])
        .returning(UsageRecord.request_id)
    )
    inserted: set[str] = set()
    for start, end in _pages(len(rows)):
        inserted.update((await session.execute(stmt, rows[start:end])).scalars())
    if inserted:
        fresh = []
        for r in rows:  # a request id twice in one batch was inserted once
            if r["request_id"] in inserted:
                inserted.discard(r["request_id"])
                fresh.append(r)
        await rollups.add(session, fresh)
        return len(fresh)
    return 0


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of ``YYYY-MM`` in UTC."""
    year, mon = (int(x) for x in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return start, end


async def month_totals(
    session: AsyncSession,
    month: str,
    *,
    workspace_id: str | None = None,
    api_key_id: str | None = None,
) -> tuple[int, int]:
    """(sum of cost_micros, sum of prompt+completion tokens) in ``month`` for a workspace or
    key, from the day roll-ups (a month is whole days)."""
    start, end = month_bounds(month)
    table = workspace_rollups if api_key_id is None else usage_rollups
    r = table.c
    stmt = select(
        func.coalesce(func.sum(r.cost_micros), 0),
        func.coalesce(func.sum(r.prompt_tokens + r.completion_tokens), 0),
    ).where(*_day_rollups(table, start, end))
    if workspace_id is not None:
        stmt = stmt.where(r.workspace_id == workspace_id)
    if api_key_id is not None:
        stmt = stmt.where(r.api_key_id == api_key_id)
    micros, tokens = (await session.execute(stmt)).one()
    return int(micros), int(tokens)


def _day_rollups(table: Table, start: datetime | None, end: datetime | None) -> list[Any]:
    """Conditions on a roll-up table for the day buckets in ``[start, end)``; both must be
    midnights UTC (the day roll-ups hold whole days)."""
    r = table.c
    conds: list[Any] = [r.granularity == "day"]
    for bound in (start, end):
        if bound is not None and rollups.bucket_start(bound, "day") != rollups.utc(bound):
            raise ValueError(f"{bound} is not a midnight UTC: the day roll-ups hold whole days")
    if start is not None:
        conds.append(r.bucket_start >= start)
    if end is not None:
        conds.append(r.bucket_start < end)
    return conds


async def price_entries(session: AsyncSession) -> list[Any]:
    """Every price book entry as ``tenancy.pricing.PriceEntry``-shaped rows."""
    return list(
        (await session.execute(select(Price).order_by(Price.effective_from, Price.id))).scalars()
    )


@dataclass(frozen=True, slots=True)
class UsageTotal:
    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


async def usage_totals(session: AsyncSession, by: str) -> list[UsageTotal]:
    """Totals grouped by ``"key"`` (api key prefix; its id when the key is gone, None for
    rows without a key) or ``"model"``, from the day roll-ups."""
    table = usage_rollups if by == "key" else workspace_rollups
    r = table.c
    group_col: Any = r.model
    source: Any = table
    if by == "key":
        group_col = func.coalesce(ApiKey.prefix, func.nullif(r.api_key_id, ""))
        source = usage_rollups.outerjoin(ApiKey, ApiKey.id == r.api_key_id)
    stmt = (
        select(
            group_col,
            func.sum(r.requests),
            func.sum(r.prompt_tokens),
            func.sum(r.completion_tokens),
        )
        .select_from(source)
        .where(r.granularity == "day")
        .group_by(group_col)
        .order_by(group_col)
    )
    rows = (await session.execute(stmt)).all()
    return [UsageTotal(str(g), int(n), int(p or 0), int(c or 0)) for g, n, p, c in rows]


async def list_usage(session: AsyncSession, limit: int = 100) -> Sequence[UsageRecord]:
    stmt = select(UsageRecord).order_by(UsageRecord.created_at.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


# --- admin plane: workspaces, prices, ledger pages and sums, audit -------------------------


async def get_workspace(session: AsyncSession, workspace_id: str) -> Workspace | None:
    return await session.get(Workspace, workspace_id)


async def list_workspaces(session: AsyncSession) -> Sequence[Workspace]:
    stmt = select(Workspace).order_by(Workspace.created_at, Workspace.id)
    return (await session.execute(stmt)).scalars().all()


async def add_price(session: AsyncSession, price: Price) -> Price:
    """Append a price book entry (entries are never updated)."""
    session.add(price)
    await session.flush()
    return price


async def list_prices(session: AsyncSession, model: str | None = None) -> Sequence[Price]:
    """Entries ordered by model, region (region-less first), effective date."""
    stmt = select(Price).order_by(
        Price.model, Price.region.is_not(None), Price.region, Price.effective_from, Price.id
    )
    if model is not None:
        stmt = stmt.where(Price.model == model)
    return (await session.execute(stmt)).scalars().all()


def _usage_filter(
    workspace_id: str | None, start: datetime | None, end: datetime | None
) -> list[Any]:
    conds: list[Any] = []
    if workspace_id is not None:
        conds.append(UsageRecord.workspace_id == workspace_id)
    if start is not None:
        conds.append(UsageRecord.created_at >= start)
    if end is not None:
        conds.append(UsageRecord.created_at < end)
    return conds


async def usage_page(
    session: AsyncSession,
    *,
    workspace_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    after: str | None = None,
) -> Sequence[UsageRecord]:
    """Ledger rows in ``[start, end)`` ordered by (created_at, request_id), at most ``limit``,
    starting after the row whose request id is ``after`` (keyset pagination)."""
    conds = _usage_filter(workspace_id, start, end)
    if after is not None:
        cursor = await session.get(UsageRecord, after)
        if cursor is not None:
            conds.append(
                or_(
                    UsageRecord.created_at > cursor.created_at,
                    and_(
                        UsageRecord.created_at == cursor.created_at,
                        UsageRecord.request_id > cursor.request_id,
                    ),
                )
            )
    stmt = (
        select(UsageRecord)
        .where(*conds)
        .order_by(UsageRecord.created_at, UsageRecord.request_id)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


@dataclass(frozen=True, slots=True)
class UsageSum:
    """Integer sums over ledger rows sharing (model, region, currency, batch or not)."""

    model: str
    region: str | None
    currency: str | None
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_micros: int
    batch: bool = False


async def usage_sums(
    session: AsyncSession,
    *,
    workspace_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[UsageSum]:
    """Sums per (model, region, currency, batch line or not) over the rows in
    ``[start, end)`` (midnights UTC, or None), from the day roll-ups; exact integers
    (PostgreSQL's ``numeric`` sums are converted without going through float)."""
    r = workspace_rollups.c
    cols = (r.model, r.region, r.currency, r.batch)
    stmt = (
        select(
            *cols,
            func.sum(r.requests),
            func.sum(r.prompt_tokens),
            func.sum(r.cached_tokens),
            func.sum(r.completion_tokens),
            func.sum(r.cost_micros),
        )
        .where(*_day_rollups(workspace_rollups, start, end))
        .group_by(*cols)
    )
    if workspace_id is not None:
        stmt = stmt.where(r.workspace_id == workspace_id)
    rows = (await session.execute(stmt)).all()
    return [
        UsageSum(m, reg or None, c or None, int(n), int(p), int(ca), int(co), int(cost), bool(b))
        for m, reg, c, b, n, p, ca, co, cost in rows
    ]


async def add_audit(session: AsyncSession, entry: AuditEntry) -> AuditEntry:
    session.add(entry)
    await session.flush()
    return entry


async def list_audit(
    session: AsyncSession,
    *,
    limit: int = 100,
    before: int | None = None,
    action: str | None = None,
    target: str | None = None,
    workspace_id: str | None = None,
) -> Sequence[AuditEntry]:
    """Newest first; ``before`` is an entry id (keyset pagination)."""
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if workspace_id is not None:
        stmt = stmt.where(AuditEntry.workspace_id == workspace_id)
    if before is not None:
        stmt = stmt.where(AuditEntry.id < before)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if target is not None:
        stmt = stmt.where(AuditEntry.target == target)
    return (await session.execute(stmt)).scalars().all()


__all__ = [
    "UsageSum",
    "UsageTotal",
    "add_api_key",
    "add_audit",
    "add_price",
    "add_workspace",
    "count_api_keys",
    "get_api_key",
    "get_api_key_with_workspace",
    "get_workspace",
    "get_workspace_by_name",
    "insert_usage",
    "list_api_keys",
    "list_audit",
    "list_prices",
    "list_usage",
    "list_workspaces",
    "month_bounds",
    "month_totals",
    "price_entries",
    "revoke_api_key",
    "usage_page",
    "usage_sums",
    "usage_totals",
]
