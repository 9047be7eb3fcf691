"""Queries over the ``files`` table (``StoredFile``); sessions are passed in.

A file is *live* while it is neither deleted (``deleted_at``) nor expired (``expires_at`` in
the past); only live files are listed, read and counted against a workspace's quota.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from modelgrid.storage.models import StoredFile


def _live(now: datetime) -> Any:
    return and_(
        StoredFile.deleted_at.is_(None),
        or_(StoredFile.expires_at.is_(None), StoredFile.expires_at > now),
    )


async def add_file(session: AsyncSession, row: StoredFile) -> StoredFile:
    session.add(row)
    await session.flush()
    return row


async def live_file(
    session: AsyncSession, workspace_id: str, file_id: str, now: datetime
) -> StoredFile | None:
    """The workspace's live file ``file_id`` (``None``: unknown, another workspace's,
    deleted or expired)."""
    stmt = select(StoredFile).where(
        StoredFile.id == file_id, StoredFile.workspace_id == workspace_id, _live(now)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def any_file(session: AsyncSession, workspace_id: str, file_id: str) -> StoredFile | None:
    """The workspace's file ``file_id``, live or not (a list cursor may have gone since)."""
    stmt = select(StoredFile).where(
        StoredFile.id == file_id, StoredFile.workspace_id == workspace_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def live_bytes(session: AsyncSession, workspace_id: str, now: datetime) -> int:
    """Bytes of the workspace's live files."""
    stmt = select(func.coalesce(func.sum(StoredFile.bytes), 0)).where(
        StoredFile.workspace_id == workspace_id, _live(now)
    )
    return int((await session.execute(stmt)).scalar_one())


async def list_live_files(
    session: AsyncSession,
    workspace_id: str,
    now: datetime,
    *,
    purpose: str | None = None,
    after: StoredFile | None = None,
    limit: int,
    order: Literal["asc", "desc"] = "desc",
) -> Sequence[StoredFile]:
    """Live files ordered by (created_at, id), ``order`` ascending or descending, at most
    ``limit``, starting after the file ``after`` (keyset pagination)."""
    conds: list[Any] = [StoredFile.workspace_id == workspace_id, _live(now)]
    if purpose is not None:
        conds.append(StoredFile.purpose == purpose)
    if after is not None:
        if order == "asc":
            conds.append(
                or_(
                    StoredFile.created_at > after.created_at,
                    and_(StoredFile.created_at == after.created_at, StoredFile.id > after.id),
                )
            )
        else:
            conds.append(
                or_(
                    StoredFile.created_at < after.created_at,
                    and_(StoredFile.created_at == after.created_at, StoredFile.id < after.id),
                )
            )
    keys = (
        (StoredFile.created_at, StoredFile.id)
        if order == "asc"
        else (StoredFile.created_at.desc(), StoredFile.id.desc())
    )
    stmt = select(StoredFile).where(*conds).order_by(*keys).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def mark_deleted(session: AsyncSession, file_id: str, now: datetime) -> bool:
    """Set ``deleted_at`` unless it is set already; whether this call set it."""
    stmt = (
        update(StoredFile)
        .where(StoredFile.id == file_id, StoredFile.deleted_at.is_(None))
        .values(deleted_at=now)
    )
    result: Any = await session.execute(stmt)
    return bool(result.rowcount)


async def undeleted_ids(session: AsyncSession, ids: list[str]) -> set[str]:
    """Which of ``ids`` have a row not marked deleted (expired ones included), asked in
    pages of 500."""
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        page = ids[i : i + 500]
        stmt = select(StoredFile.id).where(StoredFile.id.in_(page), StoredFile.deleted_at.is_(None))
        found.update((await session.execute(stmt)).scalars().all())
    return found


async def expired_files(session: AsyncSession, now: datetime, limit: int) -> Sequence[StoredFile]:
    """Files past their expiry and not yet deleted, oldest expiry first, at most ``limit``."""
    stmt = (
        select(StoredFile)
        .where(
            StoredFile.deleted_at.is_(None),
            StoredFile.expires_at.is_not(None),
            StoredFile.expires_at <= now,
        )
        .order_by(StoredFile.expires_at)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


__all__ = [
    "add_file",
    "any_file",
    "expired_files",
    "list_live_files",
    "live_bytes",
    "live_file",
    "mark_deleted",
    "undeleted_ids",
]
