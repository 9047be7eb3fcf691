"""Oversized bodies are refused early with 413 in the error envelope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.conftest import make_settings
from tests.support import ThreadServer, create_key


@pytest.fixture
def small(tmp_path: Path) -> Iterator[ThreadServer]:
    settings = make_settings(tmp_path, server={"max_body_bytes": 10_000})
    s = ThreadServer(settings, lambda _s: [FakeEngine()])
    s.api_key = create_key(settings.database_url, name="t").plaintext  # type: ignore[attr-defined]
    s.start()
    yield s
    s.stop()


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
