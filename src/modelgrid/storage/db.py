"""Async engine and sessions built from a database URL (nothing at import time)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An ``AsyncEngine``; SQLite gets WAL mode and a busy timeout so several processes
    (server and CLI) can share the file.
    """
    kwargs: dict[str, Any] = {"echo": echo}
    is_sqlite = url.startswith("sqlite")
    if is_sqlite:
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if is_sqlite:

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


T = TypeVar("T")


async def finish_despite_cancel(transaction: Coroutine[Any, Any, T]) -> T:
    """Run ``transaction`` in its own task and await it shielded: a caller cancelled meanwhile
    (a client that went away) does not cut it between its statement and its commit, which
    would leave the connection open with its transaction (on SQLite, the write lock) until
    garbage collection (``core.periodic`` tells the same hazard for background loops)."""
    return await asyncio.shield(asyncio.ensure_future(transaction))


def sessionmaker(
    engine: AsyncEngine, *, announce: Callable[[tuple[str, ...]], None] | None = None
) -> async_sessionmaker[Any]:
    """Sessions over ``engine``; ``announce``: called (on the committing thread, so it must
    not block) with the control-plane topics each commit changed (``control_state``)."""
    if announce is None:
        return async_sessionmaker(engine, expire_on_commit=False)
    from modelgrid.storage import control_state

    control_state.announce_commits()
    return async_sessionmaker(
        engine, expire_on_commit=False, info={control_state.ANNOUNCE: announce}
    )


__all__ = ["create_engine", "finish_despite_cancel", "sessionmaker"]
