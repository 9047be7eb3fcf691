"""The engine worker mounts the gateway's own model-API routers: for the same request both
answer the same bytes (a refusal) and the same SSE framing (a stream that fails after its
first token: one error event, no ``[DONE]``). Real uvicorn servers, the scripted engine."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.upstream import PROMPT_TOKENS_HEADER
from modelgrid.worker import create_worker_app
from tests.conftest import ServerFactory
from tests.scripted_upstream import AppThread

MODEL = "fake-model"
MSG = [{"role": "user", "content": "What is the capital of France?"}]
TOKEN = "worker-secret"


@dataclass
class Side:
    base_url: str
    token: str

    def post(self, path: str, body: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        return httpx.post(f"{self.base_url}{path}", content=content, headers=headers, timeout=10)


@pytest.fixture
def sides(server_factory: ServerFactory) -> Iterator[tuple[Side, Side]]:
    """(gateway, worker), each over a scripted engine that fails after its first token."""
    gateway = server_factory(FakeEngine(MODEL, fail_after_tokens=1))
    worker = AppThread(
        create_worker_app(lambda: FakeEngine(MODEL, fail_after_tokens=1), token=TOKEN),
        "/health/ready",
    ).start()
    yield Side(gateway.base_url, gateway.api_key), Side(worker.base_url, TOKEN)
    worker.stop()


BAD = [
    ("/v1/chat/completions", {"model": MODEL, "messages": "not a list"}),
    ("/v1/chat/completions", {"model": MODEL, "messages": MSG, "temperature": 9}),
    ("/v1/chat/completions", b"{not json"),
    ("/v1/chat/completions", b""),
    ("/v1/completions", {"model": MODEL}),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "n": 0, "stream": True}),
    ("/v1/chat/completions", {"model": "nope", "messages": MSG, "stream": True}),
    ("/v1/completions", {"model": MODEL, "prompt": "word " * 100, "stream": True}),
]


def test_a_refused_request_gets_the_same_status_and_bytes(sides: tuple[Side, Side]) -> None:
    """Validation (400), unknown model (404) and context length (400) alike, streamed or not:
    an error before the first token is plain JSON with its status on both."""
    gateway, worker = sides
    for path, body in BAD:
        g, w = gateway.post(path, body), worker.post(path, body)
        assert g.status_code in (400, 404), (path, body, g.text)
        assert (w.status_code, w.content) == (g.status_code, g.content), (path, body)
        assert w.headers["content-type"] == g.headers["content-type"] == "application/json"


def _frames(text: str) -> list[Any]:
    """The stream's events, with the per-request ids and times masked."""
    assert text.endswith("\n\n")
    frames: list[Any] = []
    for event in text.split("\n\n")[:-1]:
        assert event.startswith("data: "), event
        data = event.removeprefix("data: ")
        frames.append(data if data == "[DONE]" else json.loads(data))
    masked = json.dumps(frames)
    masked = re.sub(r'"(chatcmpl|cmpl)-[^"]+"', r'"\1-ID"', masked)
    return list(json.loads(re.sub(r'"created": \d+', '"created": 0', masked)))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": MODEL, "messages": MSG, "stream": True}),
        ("/v1/completions", {"model": MODEL, "prompt": "The capital", "stream": True}),
    ],
)
def test_a_stream_failing_after_its_first_token_is_framed_the_same(
    sides: tuple[Side, Side], path: str, body: dict[str, Any]
) -> None:
    gateway, worker = sides
    g, w = gateway.post(path, body), worker.post(path, body)
    assert g.status_code == w.status_code == 200
    assert g.headers["content-type"] == w.headers["content-type"]
    assert g.headers["content-type"].startswith("text/event-stream")
    frames = _frames(g.text)
    assert _frames(w.text) == frames
    assert "[DONE]" not in frames
    assert "Paris" in json.dumps(frames[:-1])  # the first token went out, then the error
    assert frames[-1] == {
        "error": {
            "message": "The fake engine failed on purpose.",
            "type": "server_error",
            "param": None,
            "code": "engine_error",
        }
    }
    # Only the worker tells the gateway in front of it the exact prompt count.
    assert PROMPT_TOKENS_HEADER not in g.headers
    assert int(w.headers[PROMPT_TOKENS_HEADER]) > 0
