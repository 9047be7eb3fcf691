"""Queries over the ``responses`` table (``StoredResponse``); sessions are passed in.

A response is *live* until ``expires_at``; a deleted one has no row. A chain is followed
through ``previous_response_id`` with one recursive query (SQLite and PostgreSQL both have
``WITH RECURSIVE``), never leaving the workspace.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from modelgrid.storage.models import StoredResponse


async def add_response(session: AsyncSession, row: StoredResponse) -> None:
    session.add(row)
    await session.flush()


async def get_response(
    session: AsyncSession, workspace_id: str, response_id: str
) -> StoredResponse | None:
    """The workspace's response ``response_id``, expired or not (``None``: unknown or
    another workspace's)."""
    stmt = select(StoredResponse).where(
        StoredResponse.id == response_id, StoredResponse.workspace_id == workspace_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def chain(
    session: AsyncSession, workspace_id: str, response_id: str, max_depth: int
) -> list[StoredResponse]:
    """``response_id`` and the responses its ``previous_response_id`` leads to, newest first,
    at most ``max_depth`` of them, all of the workspace. The walk stops where a link is
    missing (deleted, or never stored): the last row's ``previous_response_id`` then names
    a response that is not in the list."""
    r = StoredResponse
    start = (
        select(r.id, r.previous_response_id, literal(0).label("depth"))
        .where(r.id == response_id, r.workspace_id == workspace_id)
        .cte("chain", recursive=True)
    )
    step = select(r.id, r.previous_response_id, (start.c.depth + 1).label("depth")).where(
        r.id == start.c.previous_response_id,
        r.workspace_id == workspace_id,
        start.c.depth < max_depth - 1,
    )
    walk = start.union_all(step)
    stmt = select(r, walk.c.depth).join(walk, walk.c.id == r.id).order_by(walk.c.depth)
    return [row for row, _ in (await session.execute(stmt)).all()]


async def delete_response(session: AsyncSession, workspace_id: str, response_id: str) -> bool:
    """Delete the workspace's response; whether there was one."""
    stmt = delete(StoredResponse).where(
        StoredResponse.id == response_id, StoredResponse.workspace_id == workspace_id
    )
    result: Any = await session.execute(stmt)
    return bool(result.rowcount)


async def expired_ids(session: AsyncSession, now: datetime, limit: int) -> Sequence[str]:
    """Ids of responses past ``expires_at``, oldest expiry first, at most ``limit``."""
    stmt = (
        select(StoredResponse.id)
        .where(StoredResponse.expires_at <= now)
        .order_by(StoredResponse.expires_at)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def delete_ids(session: AsyncSession, ids: Sequence[str]) -> int:
    """Delete the responses ``ids``; how many there were."""
    if not ids:
        return 0
    result: Any = await session.execute(delete(StoredResponse).where(StoredResponse.id.in_(ids)))
    return int(result.rowcount)


__all__ = [
    "add_response",
    "chain",
    "delete_ids",
    "delete_response",
    "expired_ids",
    "get_response",
]
