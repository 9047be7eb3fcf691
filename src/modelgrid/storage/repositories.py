"""Queries over the models, one function per operation; sessions are passed in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from modelgrid.storage.models import ApiKey, UsageRecord, Workspace


async def get_workspace_by_name(session: AsyncSession, name: str) -> Workspace | None:
    return (
        await session.execute(select(Workspace).where(Workspace.name == name))
    ).scalar_one_or_none()


async def add_workspace(session: AsyncSession, workspace_id: str, name: str) -> Workspace:
    ws = Workspace(id=workspace_id, name=name, created_at=datetime.now(UTC))
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


async def list_api_keys(
    session: AsyncSession, *, include_revoked: bool = False
) -> Sequence[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
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


async def insert_usage(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert usage rows, ignoring any whose ``request_id`` is already stored (idempotent)."""
    if not rows:
        return
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(UsageRecord).values(rows).on_conflict_do_nothing(index_elements=["request_id"])
    await session.execute(stmt)


@dataclass(frozen=True, slots=True)
class UsageTotal:
    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


async def usage_totals(session: AsyncSession, by: str) -> list[UsageTotal]:
    """Totals grouped by ``"key"`` (api key prefix) or ``"model"``."""
    if by == "key":
        group_col: Any = func.coalesce(ApiKey.prefix, UsageRecord.api_key_id)
        stmt = select(
            group_col,
            func.count(),
            func.sum(UsageRecord.prompt_tokens),
            func.sum(UsageRecord.completion_tokens),
        ).outerjoin(ApiKey, ApiKey.id == UsageRecord.api_key_id)
    else:
        group_col = UsageRecord.model
        stmt = select(
            group_col,
            func.count(),
            func.sum(UsageRecord.prompt_tokens),
            func.sum(UsageRecord.completion_tokens),
        )
    stmt = stmt.group_by(group_col).order_by(group_col)
    rows = (await session.execute(stmt)).all()
    return [UsageTotal(str(g), int(n), int(p or 0), int(c or 0)) for g, n, p, c in rows]


async def list_usage(session: AsyncSession, limit: int = 100) -> Sequence[UsageRecord]:
    stmt = select(UsageRecord).order_by(UsageRecord.created_at.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


__all__ = [
    "UsageTotal",
    "add_api_key",
    "add_workspace",
    "count_api_keys",
    "get_api_key",
    "get_api_key_with_workspace",
    "get_workspace_by_name",
    "insert_usage",
    "list_api_keys",
    "list_usage",
    "revoke_api_key",
    "usage_totals",
]
