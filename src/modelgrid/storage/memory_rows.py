"""Queries over ``app_memories`` (``AppMemory``): an end user's long-term facts, per workspace
and ``memory_id``; sessions are passed in. Every query takes the workspace."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from modelgrid.storage.models import AppMemory


async def facts(
    session: AsyncSession, workspace_id: str, memory_id: str, limit: int | None = None
) -> list[AppMemory]:
    """The memory's facts, oldest first (``limit``: the newest ``limit`` of them)."""
    stmt = select(AppMemory).where(
        AppMemory.workspace_id == workspace_id, AppMemory.memory_id == memory_id
    )
    if limit is None:
        return list((await session.execute(stmt.order_by(AppMemory.id))).scalars())
    newest = (await session.execute(stmt.order_by(AppMemory.id.desc()).limit(limit))).scalars()
    return list(reversed(list(newest)))


async def add_facts(
    session: AsyncSession,
    workspace_id: str,
    memory_id: str,
    new: Sequence[str],
    *,
    request_id: str | None,
    now: datetime,
) -> list[AppMemory]:
    """Add the facts the memory does not hold yet (compared case-insensitively); the rows
    added."""
    held = {f.fact.casefold() for f in await facts(session, workspace_id, memory_id)}
    rows = []
    for fact in new:
        if fact.casefold() in held:
            continue
        held.add(fact.casefold())
        rows.append(
            AppMemory(
                workspace_id=workspace_id,
                memory_id=memory_id,
                fact=fact,
                request_id=request_id,
                created_at=now,
            )
        )
    session.add_all(rows)
    await session.flush()
    return rows


async def delete_facts(
    session: AsyncSession, workspace_id: str, memory_id: str, fact_id: int | None = None
) -> int:
    """Delete the memory's facts (or the one ``fact_id``); how many there were."""
    stmt = delete(AppMemory).where(
        AppMemory.workspace_id == workspace_id, AppMemory.memory_id == memory_id
    )
    if fact_id is not None:
        stmt = stmt.where(AppMemory.id == fact_id)
    result: Any = await session.execute(stmt)
    return int(result.rowcount)


__all__ = ["add_facts", "delete_facts", "facts"]
