"""A streaming response that stops its producer the moment the client disconnects.

The response starts with the first chunk, so headers set up to the first delta (which
replica answered, after any failover) go out with it, and a ``ModelgridError`` raised before
it (every replica refused: 503 with ``Retry-After``) is answered as a plain JSON error with
its own status, as if it had happened before streaming was chosen. It sends the body
iterator's chunks while a second task waits for ``http.disconnect``; on disconnect the
producer is cancelled, which runs every ``finally`` below it (usage recording, the engine's
cancel flag), and the iterator is always closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from modelgrid.api.errors import error_response
from modelgrid.core.errors import ModelgridError


class SSEResponse(Response):
    """``text/event-stream`` response over an async iterator of already-framed bytes."""

    media_type = "text/event-stream"

    def __init__(self, stream: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> None:
        self.status_code = 200
        self.background = None
        self.stream = stream
        self.init_headers(
            {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def pump() -> None:
            try:
                try:
                    first = await anext(self.stream, None)
                except ModelgridError as exc:  # nothing sent yet: a plain JSON error
                    await error_response(exc, Request(scope))(scope, receive, send)
                    return
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                if first is not None:
                    await send({"type": "http.response.body", "body": first, "more_body": True})
                    async for chunk in self.stream:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                aclose = getattr(self.stream, "aclose", None)
                if aclose is not None:
                    await aclose()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        pump_task = asyncio.create_task(pump())
        watch_task = asyncio.create_task(watch())
        try:
            await asyncio.wait({pump_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watch_task, pump_task):
                if not task.done():
                    task.cancel()
            for task in (pump_task, watch_task):
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task


__all__ = ["SSEResponse"]
