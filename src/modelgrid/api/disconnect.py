"""Stop a non-streamed generation when its client goes away.

A JSON answer is produced in full before its first byte, so without a watch a client that
gave up would keep a replica busy until the generation ends. ``unless_disconnected`` awaits the
work in the request's own task while a second task waits for ``http.disconnect``; if the
client leaves first, that task cancels the request's task, so the work is cancelled (its
``finally`` blocks record usage as 499 and free the replica) and a 499 response, which nobody
will read, is returned. (One extra task per request, not two plus ``asyncio.wait``: this is
on every non-streamed request's path.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

T = TypeVar("T")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | Response:
    current = asyncio.current_task()
    assert current is not None
    left = False

    async def watch() -> None:
        nonlocal left
        while (await request.receive())["type"] != "http.disconnect":
            pass
        left = True
        current.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not left:  # cancelled from outside (server shutdown): not ours to swallow
            raise
        current.uncancel()
        return Response(status_code=499)
    finally:
        watcher.cancel()


__all__ = ["unless_disconnected"]
