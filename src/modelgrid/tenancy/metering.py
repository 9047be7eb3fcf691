"""Usage metering off the hot path: records are queued in memory and written in batches.

``record()`` never awaits the database; a background task flushes every
``flush_interval_s`` or as soon as ``batch_size`` rows wait, and ``aclose()`` flushes the rest
on shutdown. A failed write keeps its rows for the next attempt. Inserts are idempotent by
``request_id`` (see ``storage.repositories.insert_usage``), so a retried batch never counts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from modelgrid.storage import repositories as repo

log = logging.getLogger("modelgrid.metering")


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One request's usage.

    Attributes:
        request_id: Idempotency key (server-generated).
        client_request_id: The client's ``x-request-id``, for tracing only.
        api_key_id / workspace_id: Who is billed.
        model: Served model id.
        endpoint: e.g. ``chat.completions``.
        prompt_tokens / completion_tokens: Exact tokenizer counts (abandoned streams: the
            tokens produced so far).
        ttft_ms: Time to first token (None when no token was produced).
        total_ms: Request start to end.
        status: HTTP status the request ended with (499 when the client went away).
        finish_reason: ``stop``, ``length``, ``cancelled``, ``error``.
    """

    request_id: str
    client_request_id: str | None
    api_key_id: str | None
    workspace_id: str | None
    model: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: int | None
    total_ms: int
    status: int
    finish_reason: str | None
    created_at: datetime


def now_utc() -> datetime:
    return datetime.now(UTC)


class UsageWriter:
    """Batches ``UsageEvent``s into the database.

    Args:
        sessions: Async session factory.
        flush_interval_s: Longest time a record waits in memory.
        batch_size: Flush early once this many records wait.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[Any],
        *,
        flush_interval_s: float = 0.5,
        batch_size: int = 256,
    ) -> None:
        self._sessions = sessions
        self._interval = flush_interval_s
        self._batch_size = batch_size
        self._pending: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.written = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-writer")

    def record(self, event: UsageEvent) -> None:
        """Queue one record (non-blocking)."""
        self._pending.append(event)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        while True:
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
            try:
                async with self._sessions() as session, session.begin():
                    await repo.insert_usage(session, [asdict(e) for e in batch])
            except BaseException:
                self._pending[:0] = batch
                raise
            self.written += len(batch)
            return len(batch)

    async def aclose(self) -> None:
        """Stop the background task and flush what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


__all__ = ["UsageEvent", "UsageWriter", "now_utc"]
