"""``NaN`` and ``Infinity`` (JSON extensions the parser accepts) in a sampling field are a
400 that says the number must be finite, on every protocol."""

from __future__ import annotations

import httpx
import pytest

from tests.support import ThreadServer

MODEL = "fake-model"
USER = '[{"role": "user", "content": "hi"}]'


def post(s: ThreadServer, path: str, raw: str) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {s.api_key}",  # type: ignore[attr-defined]
        "Content-Type": "application/json",
    }
    return httpx.post(f"{s.base_url}{path}", headers=headers, content=raw, timeout=10)


@pytest.mark.parametrize(("value", "shown"), [("NaN", "nan"), ("Infinity", "inf")])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", f'{{"model": "{MODEL}", "messages": {USER}, "temperature": %s}}'),
        ("/v1/completions", f'{{"model": "{MODEL}", "prompt": "hi", "temperature": %s}}'),
        ("/v1/responses", f'{{"model": "{MODEL}", "input": "hi", "temperature": %s}}'),
    ],
)
def test_openai(fake_server: ThreadServer, path: str, body: str, value: str, shown: str) -> None:
    r = post(fake_server, path, body % value)
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "message": f"Invalid value for 'temperature': must be a finite number (got {shown}).",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_request",
        }
    }


def test_openai_penalty(fake_server: ThreadServer) -> None:
    body = f'{{"model": "{MODEL}", "messages": {USER}, "repetition_penalty": Infinity}}'
    r = post(fake_server, "/v1/chat/completions", body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "repetition_penalty"


def test_anthropic(fake_server: ThreadServer) -> None:
    body = f'{{"model": "{MODEL}", "max_tokens": 4, "messages": {USER}, "top_p": NaN}}'
    r = post(fake_server, "/v1/messages", body)
    assert r.status_code == 400
    assert r.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Invalid value for 'top_p': must be a finite number (got nan).",
        },
        "request_id": r.json()["request_id"],
    }


@pytest.mark.parametrize(
    "path",
    ["/api/v1/services/aigc/text-generation/generation", "/api/v1/apps/app-1/completion"],
)
def test_dashscope(fake_server: ThreadServer, path: str) -> None:
    body = f'{{"model": "{MODEL}", "input": {{"messages": {USER}}}, "parameters": {{"temperature": NaN}}}}'
    r = post(fake_server, path, body)
    assert r.status_code == 400
    assert r.json() == {
        "request_id": r.json()["request_id"],
        "code": "InvalidParameter",
        "message": "Invalid value for 'parameters.temperature': must be a finite number (got nan).",
    }
