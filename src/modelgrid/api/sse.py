"""A streaming response that stops its producer the moment the client disconnects.

The response starts with the first chunk, so headers set up to the first delta (which
replica answered, after any failover) go out with it, and a ``ModelgridError`` raised before
it (every replica refused: 503 with ``Retry-After``) is answered as a plain JSON error with
its own status, as if it had happened before streaming was chosen. It sends the body
iterator's chunks while a second task waits for ``http.disconnect``; on disconnect the
producer is cancelled, which runs every ``finally`` below it (usage recording, the engine's
cancel flag), and the iterator is always closed.

**Cut by shutdown.** Only the server cancels the request's own task: uvicorn does when its
graceful-shutdown time (``timeout_graceful_shutdown``, 10 s for ``modelgrid serve``) runs out
with the stream still going. Then the producer is cancelled with
``core.errors.SHUTDOWN_CANCEL`` (its usage so far recorded once, as 503: ``serving.metered``),
the stream ends with the protocol's own error event for ``ServerShutdownError`` (``cut``,
from the route: the way its framing ends a stream that fails after the first byte) — or, when
nothing was sent yet, a plain 503 — and one line is logged. The cancellation is then absorbed:
the response is complete, so uvicorn logs no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from modelgrid.api.errors import error_response
from modelgrid.core.errors import SHUTDOWN_CANCEL, ModelgridError, ServerShutdownError

log = logging.getLogger("modelgrid.api")


class SSEResponse(Response):
    """``text/event-stream`` response over an async iterator of already-framed bytes.

    Args:
        stream: The framed events.
        headers: Extra response headers.
        cut: The protocol's last event for an error after the first byte (the same the
            route's framing sends), sent when the server's shutdown ends the stream.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        stream: AsyncIterator[bytes],
        headers: dict[str, str] | None = None,
        *,
        cut: Callable[[ModelgridError], bytes],
    ) -> None:
        self.status_code = 200
        self.background = None
        self.stream = stream
        self.cut = cut
        self.init_headers(
            {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = -1  # body chunks sent; -1: nothing yet, not even the status line

        async def pump() -> None:
            nonlocal sent
            try:
                try:
                    first = await anext(self.stream, None)
                except ModelgridError as exc:  # nothing sent yet: a plain JSON error
                    await error_response(exc, Request(scope))(scope, receive, send)
                    return
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                sent = 0
                if first is not None:
                    await send({"type": "http.response.body", "body": first, "more_body": True})
                    sent += 1
                    async for chunk in self.stream:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        sent += 1
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
        except asyncio.CancelledError:  # the server's shutdown (the module docstring)
            pump_task.cancel(SHUTDOWN_CANCEL)
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pump_task
            await self._end_cut(scope, receive, send, sent)
            return
        finally:
            for task in (watch_task, pump_task):
                if not task.done():
                    task.cancel()
            for task in (pump_task, watch_task):
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task

    async def _end_cut(self, scope: Scope, receive: Receive, send: Send, sent: int) -> None:
        """End a stream the server's shutdown cut, after ``sent`` chunks (-1: before the
        status line): the protocol's error event, or a plain 503 before the first byte."""
        exc = ServerShutdownError()
        log.warning(
            "server shutdown cut the stream of %s %s after %d events: ended with %s",
            scope.get("method"),
            scope.get("path"),
            max(sent, 0),
            exc.code,
        )
        with contextlib.suppress(OSError):
            if sent < 0:
                await error_response(exc, Request(scope))(scope, receive, send)
                return
            await send({"type": "http.response.body", "body": self.cut(exc), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})


__all__ = ["SSEResponse"]
