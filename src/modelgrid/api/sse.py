"""A streaming response that stops its producer the moment the client disconnects.

It sends the body iterator's chunks while a second task waits for ``http.disconnect``; on
disconnect the producer is cancelled, which runs every ``finally`` below it (usage recording,
the engine's cancel flag), and the iterator is always closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


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
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
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
