"""One request carries at most ``MAX_MESSAGES`` messages (input items) on every chat-like
route: refused at the wire, in the route's own error shape, before the engine renders any
chat template (20,000 tiny messages once kept an engine busy past its liveness checks)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from modelgrid.protocol import MAX_MESSAGES
from tests.support import ThreadServer

MODEL = "fake-model"
TOO_MANY = 20_000
EXPECTED = (
    "array too long. Expected an array with maximum length 2048, but got an array with "
    "length 20000 instead."
)


def post(s: ThreadServer, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {s.api_key}"}  # type: ignore[attr-defined]
    return httpx.post(f"{s.base_url}{path}", headers=headers, json=body, timeout=30)


def user_turns(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": "hi"}] * n


def test_the_cap_is_openais() -> None:
    assert MAX_MESSAGES == 2048


def test_chat_completions(fake_server: ThreadServer) -> None:
    start = time.monotonic()
    r = post(
        fake_server, "/v1/chat/completions", {"model": MODEL, "messages": user_turns(TOO_MANY)}
    )
    assert time.monotonic() - start < 5
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "message": "Invalid 'messages': " + EXPECTED,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "invalid_request",
        }
    }


def test_chat_completions_at_the_cap_is_not_refused_for_its_length(
    fake_server: ThreadServer,
) -> None:
    body = {"model": MODEL, "messages": user_turns(MAX_MESSAGES), "max_tokens": 1}
    r = post(fake_server, "/v1/chat/completions", body)
    assert r.status_code == 400  # the fake model's context holds fewer tokens
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_anthropic_messages(fake_server: ThreadServer) -> None:
    body = {"model": MODEL, "max_tokens": 4, "messages": user_turns(TOO_MANY)}
    r = post(fake_server, "/v1/messages", body)
    assert r.status_code == 400
    assert r.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "Invalid 'messages': " + EXPECTED},
        "request_id": r.json()["request_id"],
    }


def test_dashscope_generation(fake_server: ThreadServer) -> None:
    body = {"model": MODEL, "input": {"messages": user_turns(TOO_MANY)}}
    r = post(fake_server, "/api/v1/services/aigc/text-generation/generation", body)
    assert r.status_code == 400
    assert r.json() == {
        "request_id": r.json()["request_id"],
        "code": "InvalidParameter",
        "message": "Invalid 'input.messages': " + EXPECTED,
    }


def test_dashscope_application(fake_server: ThreadServer) -> None:
    body = {"input": {"messages": user_turns(TOO_MANY)}}
    r = post(fake_server, "/api/v1/apps/app-1/completion", body)
    assert r.status_code == 400
    assert r.json() == {
        "request_id": r.json()["request_id"],
        "code": "InvalidParameter",
        "message": "Invalid 'input.messages': " + EXPECTED,
    }


@pytest.mark.parametrize(
    "item",
    [
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    ],
)
def test_responses_input(fake_server: ThreadServer, item: dict[str, Any]) -> None:
    r = post(fake_server, "/v1/responses", {"model": MODEL, "input": [item] * TOO_MANY})
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "message": "Invalid 'input': " + EXPECTED,
            "type": "invalid_request_error",
            "param": "input",
            "code": "invalid_request",
        }
    }


def test_completions_and_embeddings_lists_are_capped(fake_server: ThreadServer) -> None:
    prompts = post(fake_server, "/v1/completions", {"model": MODEL, "prompt": ["x"] * TOO_MANY})
    assert prompts.status_code == 400 and prompts.json()["error"]["param"] == "prompt"
    inputs = post(fake_server, "/v1/embeddings", {"model": MODEL, "input": ["x"] * TOO_MANY})
    assert inputs.status_code == 400 and inputs.json()["error"]["param"] == "input"
