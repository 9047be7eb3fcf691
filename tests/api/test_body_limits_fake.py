"""Oversized bodies are refused early with 413 in the error envelope."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.support import ThreadServer


@pytest.fixture
def small(server_factory: ServerFactory) -> ThreadServer:
    return server_factory(server={"max_body_bytes": 10_000})


def test_body_over_the_limit_is_413(small: ThreadServer) -> None:
    headers = {"Authorization": f"Bearer {small.api_key}"}  # type: ignore[attr-defined]
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "x" * 20_000}]}
    r = httpx.post(f"{small.base_url}/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    ok = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    assert (
        httpx.post(f"{small.base_url}/v1/chat/completions", json=ok, headers=headers).status_code
        == 200
    )


def test_chunked_body_over_the_limit_is_413(small: ThreadServer) -> None:
    headers = {"Authorization": f"Bearer {small.api_key}", "content-type": "application/json"}  # type: ignore[attr-defined]

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"model": "fake-model", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}]}'

    r = httpx.post(f"{small.base_url}/v1/chat/completions", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
