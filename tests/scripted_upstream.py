"""A real local HTTP server that plays an OpenAI-compatible upstream, scripted per test.

``ScriptedUpstream`` is a raw ASGI app (so a test controls every byte and can cut the
connection mid-body) served by uvicorn in a background thread (``AppThread``). It records
each request it got (headers, JSON body) and whether the client disconnected.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support import AppThread as AppThread  # served by it; importers find it here too

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def chunk(
    content: str | None = None,
    *,
    finish: str | None = None,
    role: str | None = None,
    index: int = 0,
    model: str = "up-model",
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(prompt: int, completion: int, cached: int | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


@dataclass
class Exchange:
    """What one request to the upstream looked like."""

    path: str
    headers: dict[str, str]
    body: Any
    disconnected: threading.Event = field(default_factory=threading.Event)


Handler = Callable[["Exchange", Send, Receive], Awaitable[None]]


class ScriptedUpstream:
    """The upstream: ``handler`` answers ``POST …/chat/completions``; ``GET /health`` and
    ``GET …/models`` answer 200 (``models`` lists ``model_entries``)."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler: Handler = handler or stream_reply(["Hello", " world"])
        self.exchanges: list[Exchange] = []
        self.model_entries: list[dict[str, Any]] = [{"id": "up-model", "object": "model"}]
        self.release = threading.Event()  # handlers may wait for the test to set it

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if scope["method"] == "GET":
            if path.endswith("/models"):
                await json_reply(200, {"object": "list", "data": self.model_entries})(
                    Exchange(path, {}, None), send, receive
                )
            elif path == "/health":
                await json_reply(200, {"status": "ok"})(Exchange(path, {}, None), send, receive)
            else:
                await json_reply(404, {"error": {"message": "no such route"}})(
                    Exchange(path, {}, None), send, receive
                )
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        ex = Exchange(path, headers, json.loads(raw) if raw else None)
        self.exchanges.append(ex)

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            ex.disconnected.set()

        watcher = asyncio.ensure_future(watch())
        try:
            await self.handler(ex, send, receive)
        finally:
            await asyncio.sleep(0.05)  # let a disconnect right after the reply be noticed
            watcher.cancel()


async def start_sse(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )


async def body(send: Send, data: bytes, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


def stream_reply(
    pieces: list[str],
    *,
    usage: tuple[int, int] | None = (11, 2),
    finish: str = "stop",
    delay_s: float = 0.0,
) -> Handler:
    """A well-behaved stream: role chunk, one chunk per piece, finish, usage, ``[DONE]``."""

    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        await start_sse(send)
        await body(send, event(chunk("", role="assistant")))
        for piece in pieces:
            if ex.disconnected.is_set():
                return
            if delay_s:
                await asyncio.sleep(delay_s)
            await body(send, event(chunk(piece)))
        await body(send, event(chunk(finish=finish)))
        if usage is not None:
            await body(send, event(usage_chunk(*usage)))
        await body(send, DONE, more=False)

    return handler


def json_reply(status: int, obj: Any, headers: dict[str, str] | None = None) -> Handler:
    async def handler(ex: Exchange, send: Send, receive: Receive) -> None:
        raw = json.dumps(obj).encode()
        extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await body(send, raw, more=False)

    return handler
