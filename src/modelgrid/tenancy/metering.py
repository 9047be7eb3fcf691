"""Usage metering off the hot path: spooled at once, written to the database in batches.

``record()`` never awaits the database: it appends the event to the process's spool file
(``tenancy.spool``: durable against a crash of the process as soon as it returns) and to an
in-memory batch. A background task flushes every ``flush_interval_s`` or as soon as
``batch_size`` rows wait; ``aclose()`` flushes the rest on shutdown, and ``recover()``
replays the spool segments of processes that died. A failed write keeps its rows for the
next attempt. Inserts are idempotent by ``request_id`` (``storage.repositories.insert_usage``),
so a retried or replayed batch never counts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from modelgrid.storage import repositories as repo
from modelgrid.tenancy.events import UsageEvent, as_row, now_utc
from modelgrid.tenancy.spool import Spool

log = logging.getLogger("modelgrid.metering")


class UsageWriter:
    """Batches ``UsageEvent``s into the database.

    Args:
        sessions: Async session factory.
        flush_interval_s: Longest time a record waits in memory.
        batch_size: Flush early once this many records wait.
        spool: Crash-safe spool (None: memory only, records of a killed process are lost).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[Any],
        *,
        flush_interval_s: float = 0.5,
        batch_size: int = 256,
        spool: Spool | None = None,
    ) -> None:
        self._sessions = sessions
        self._interval = flush_interval_s
        self._batch_size = batch_size
        self._spool = spool
        self._pending: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stopping = False
        self.written = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-writer")

    def record(self, event: UsageEvent) -> None:
        """Spool and queue one record (a ``write(2)``, no database round trip)."""
        if self._spool is not None:
            self._spool.append(event)
        self._pending.append(event)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def recover(self) -> int:
        """Store the records spooled by processes that died; returns how many were read."""
        if self._spool is None:
            return 0
        total = 0
        for path, events, fd in self._spool.orphans():
            try:
                await self._insert(events)
                path.unlink(missing_ok=True)
                total += len(events)
            finally:
                os.close(fd)
        if total:
            log.info("recovered %d spooled usage records", total)
        return total

    async def _insert(self, batch: list[UsageEvent]) -> None:
        if batch:
            async with self._sessions() as session, session.begin():
                await repo.insert_usage(session, [as_row(e) for e in batch])

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # keep the rows; try again next round
                log.exception("usage flush failed; %d records kept for retry", self.pending)

    async def flush(self) -> int:
        """Write everything queued now; returns the number of rows written."""
        async with self._lock:
            if not self._pending:
                return 0
            batch, self._pending = self._pending, []
            segment = self._spool.rotate() if self._spool is not None else None
            try:
                await self._insert(batch)
            except BaseException:
                self._pending[:0] = batch
                if segment is not None:  # keep the file: replayed (idempotently) at next start
                    segment.close(delete=False)
                raise
            if segment is not None:
                segment.close(delete=True)
            self.written += len(batch)
            return len(batch)

    async def aclose(self) -> None:
        """Stop the background task after its flush in progress, then flush what is left."""
        if self._task is not None:  # never cancelled inside a write (``core.periodic``)
            self._stopping = True
            self._wake.set()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()
        if self._spool is not None:
            self._spool.close()


__all__ = ["UsageEvent", "UsageWriter", "now_utc"]
