"""Background loops that stop between rounds, never inside one.

Cancelling a task while it awaits a database call leaves that call's transaction open: the
statement already ran on the driver's thread, the commit never comes, and SQLAlchemy cannot
close the connection from a cancelled greenlet. On SQLite the orphaned transaction keeps the
write lock until the connection is garbage-collected, so the next writer (the usage flush at
shutdown) waits out the whole busy timeout and fails with "database is locked". A
``Periodic`` loop is therefore stopped by a flag: ``stop()`` wakes it from its sleep and waits
for the round in progress to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("modelgrid.periodic")


class Periodic:
    """Runs ``step()`` every ``interval_s`` seconds (sleep first, then the step) until
    ``stop()``.

    Args:
        name: The task's name (shown in task dumps) and in the log line of a failed step.
        interval_s: Seconds between the end of one step and the start of the next.
        step: One round; an exception is logged and the loop goes on.
    """

    def __init__(self, name: str, interval_s: float, step: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval_s = interval_s
        self._step = step
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> None:
        """Start the loop on the running event loop (a second call does nothing)."""
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
                return
            try:
                await self._step()
            except Exception:
                log.exception("%s failed; it runs again in %g s", self.name, self.interval_s)

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Wake the loop and wait for its step in progress (if any) to end.

        A step still running after ``timeout_s`` is cancelled, as a last resort against a
        hung call (the hazard the module docstring describes then applies).
        """
        if self._task is None or self._stop is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.error("%s did not finish its round in %g s; cancelled", self.name, timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None


__all__ = ["Periodic"]
