"""The change counters every gateway follows (table ``control_state``), and the shared
topology document.

Each control-plane change bumps the counter of its topic (``principals``: keys and
workspaces, their scopes and limits; ``prices``; ``topology``) in the transaction that writes
it, so the signal commits with the change and never without it. On PostgreSQL the same
transaction also sends ``NOTIFY modelgrid_control, '<topic>'``, delivered to every listening
connection when it commits (``listen``); a gateway wakes at once, reads the counters
(``versions``, one primary-key scan of three rows) and applies what changed. Counters are
also polled, so a lost notification, a dropped listening connection or SQLite (no
notifications) cost at most the poll interval.

Where there is no ``LISTEN`` (SQLite, or ``control.listen = false``) a session made with an
``announce`` callback (``storage.db.sessionmaker``) is told each commit's changed topics
after the commit (``announce_commits``): the control plane publishes them on Redis
(``control.redis_feed``), never for a transaction that rolled back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from modelgrid.storage.models import ControlState

log = logging.getLogger("modelgrid.storage")

PRINCIPALS = "principals"
PRICES = "prices"
TOPOLOGY = "topology"
TOPICS = (PRINCIPALS, PRICES, TOPOLOGY)
CHANNEL = "modelgrid_control"
ANNOUNCE = "modelgrid.announce"  # session.info: called with the topics of each commit
_CHANGED = "modelgrid.changed"  # session.info: the topics changed in the open transaction


def _is_postgres(session: Any) -> bool:
    return bool(session.get_bind().dialect.name == "postgresql")


async def _notify(session: Any, topics: tuple[str, ...]) -> None:
    if ANNOUNCE in session.info:
        session.info.setdefault(_CHANGED, set()).update(topics)
    if _is_postgres(session):
        for topic in topics:
            await session.execute(text("SELECT pg_notify(:c, :t)"), {"c": CHANNEL, "t": topic})


async def bump(session: Any, *topics: str) -> None:
    """Count a change of each of ``topics`` in the caller's open transaction (and notify the
    listeners on PostgreSQL when it commits)."""
    await session.execute(
        update(ControlState)
        .where(ControlState.topic.in_(topics))
        .values(version=ControlState.version + 1, changed_at=datetime.now(UTC))
    )
    await _notify(session, topics)


async def versions(session: Any) -> dict[str, int]:
    """Each topic's counter."""
    rows = await session.execute(select(ControlState.topic, ControlState.version))
    return {topic: int(version) for topic, version in rows}


async def topology_version(session: Any) -> int:
    """The stored topology's version (without reading the document)."""
    version = await session.scalar(
        select(ControlState.version).where(ControlState.topic == TOPOLOGY)
    )
    return int(version or 0)


async def topology_document(session: Any) -> tuple[int, str | None]:
    """(version, the shared topology document as TOML, ``None`` before one was stored)."""
    row = await session.get(ControlState, TOPOLOGY, populate_existing=True)
    if row is None:
        return 0, None
    return int(row.version), row.document


async def save_topology_document(
    session: Any, document: str, *, expected_version: int | None
) -> int | None:
    """Store the topology document, in the caller's transaction, if its version is still
    ``expected_version`` (``None``: only if none is stored yet, the first gateway's seed).

    Returns:
        The new version, or ``None`` when another writer got there first (nothing written).
    """
    stmt = update(ControlState).where(ControlState.topic == TOPOLOGY)
    if expected_version is None:
        stmt = stmt.where(ControlState.document.is_(None))
    else:
        stmt = stmt.where(ControlState.version == expected_version)
    result = await session.execute(
        stmt.values(
            version=ControlState.version + 1, document=document, changed_at=datetime.now(UTC)
        ).returning(ControlState.version)
    )
    version = result.scalar_one_or_none()
    if version is None:
        return None
    await _notify(session, (TOPOLOGY,))
    return int(version)


def announce_commits() -> None:
    """Install (once per process) the session hooks that call a session's ``ANNOUNCE``
    callback with the topics its transaction changed, after that transaction committed (a
    rolled-back transaction's topics are dropped)."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)


def _after_commit(session: Session) -> None:
    topics = session.info.pop(_CHANGED, None)
    announce = session.info.get(ANNOUNCE)
    if topics and announce is not None:
        announce(tuple(sorted(topics)))


def _after_rollback(session: Session) -> None:
    session.info.pop(_CHANGED, None)


class Listener:
    """A dedicated PostgreSQL connection listening on ``CHANNEL``: ``on_change(topic)`` is
    called (on the event loop) for each notification, ``on_lost()`` if the connection is
    lost. ``open`` returns ``None`` for any other database, or when PostgreSQL cannot be
    reached (the caller polls)."""

    def __init__(self, conn: Any, callback: Callable[[Any, int, str, str], None]) -> None:
        self._conn = conn
        self._callback = callback

    @classmethod
    async def open(
        cls, url: str, on_change: Callable[[str], None], on_lost: Callable[[], None] = lambda: None
    ) -> Listener | None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            return None
        import asyncpg  # type: ignore[import-untyped]

        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("cannot LISTEN for control-plane changes (polling instead): %s", exc)
            return None

        def callback(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            on_change(payload)

        try:
            await conn.add_listener(CHANNEL, callback)
            conn.add_termination_listener(lambda _conn: on_lost())
        except BaseException:
            await conn.close()
            raise
        return cls(conn, callback)

    @property
    def alive(self) -> bool:
        return not self._conn.is_closed()

    async def aclose(self) -> None:
        if self._conn.is_closed():
            return
        try:
            async with asyncio.timeout(5):
                await self._conn.remove_listener(CHANNEL, self._callback)
                await self._conn.close()
        except Exception:
            self._conn.terminate()


__all__ = [
    "ANNOUNCE",
    "CHANNEL",
    "PRICES",
    "PRINCIPALS",
    "TOPICS",
    "TOPOLOGY",
    "Listener",
    "announce_commits",
    "bump",
    "save_topology_document",
    "topology_document",
    "topology_version",
    "versions",
]
