"""Stop a non-streamed generation when its client goes away.

A JSON answer is produced in full before its first byte, so without a watch a client that
gave up would keep a replica busy until the generation ends. ``unless_disconnected`` runs the
work as a task beside a second one waiting for ``http.disconnect``; if the client leaves
first, the work is cancelled (its ``finally`` blocks record usage as 499 and free the
replica) and a 499 response, which nobody will read, is returned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

T = TypeVar("T")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | Response:
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return Response(status_code=499)


__all__ = ["unless_disconnected"]
