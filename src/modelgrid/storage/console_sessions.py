"""Rows of the web console's sessions (``console_sessions``): add, find with the key, touch,
end. The console (``console.sessions``) decides what they mean; each function here is one SQL
statement."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from modelgrid.storage.models import ApiKey, ConsoleSession


async def add(session: AsyncSession, row: ConsoleSession) -> None:
    session.add(row)
    await session.flush()


async def with_key(session: AsyncSession, id_hash: str) -> tuple[ConsoleSession, ApiKey] | None:
    """The session whose id hashes to ``id_hash`` and the key it signed in with (revoked or
    not: the caller decides), or ``None``."""
    stmt = (
        select(ConsoleSession, ApiKey)
        .join(ApiKey, ApiKey.id == ConsoleSession.api_key_id)
        .where(ConsoleSession.id_hash == id_hash)
    )
    found = (await session.execute(stmt)).first()
    return None if found is None else (found[0], found[1])


async def touch(session: AsyncSession, id_hash: str, at: datetime) -> None:
    """Set the session's ``last_seen_at``."""
    await session.execute(
        update(ConsoleSession).where(ConsoleSession.id_hash == id_hash).values(last_seen_at=at)
    )


async def end(session: AsyncSession, id_hash: str) -> int:
    """Delete one session; returns how many rows went (0 or 1)."""
    result = await session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == id_hash))
    return int(getattr(result, "rowcount", 0) or 0)


async def end_for_key(session: AsyncSession, api_key_id: str) -> int:
    """Delete every session of key ``api_key_id`` (revoked or expired); returns how many."""
    result = await session.execute(
        delete(ConsoleSession).where(ConsoleSession.api_key_id == api_key_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_expired(session: AsyncSession, now: datetime) -> int:
    """Delete the sessions that ended before ``now``; returns how many."""
    result = await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["add", "end", "end_for_key", "purge_expired", "touch", "with_key"]
