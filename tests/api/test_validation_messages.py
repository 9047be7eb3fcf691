"""Validation errors name the parameter as the client wrote it, with no library internals."""

from __future__ import annotations

import httpx
import pytest

from tests.support import ThreadServer


def post(s: ThreadServer, path: str, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {s.api_key}"}  # type: ignore[attr-defined]
    return httpx.post(f"{s.base_url}{path}", headers=headers, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"model": "fake-model", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
        ),
        (
            {"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "stop": 5},
            "stop",
        ),
        ({"model": "fake-model", "prompt": 5}, "prompt"),
        (  # no lax coercion: a string is not a boolean, nor a boolean a token id
            {
                "model": "fake-model",
                "messages": [{"role": "user", "content": "x"}],
                "stream": "yes",
            },
            "stream",
        ),
        ({"model": "fake-model", "prompt": [True, 2]}, "prompt"),
        (  # content is required (null only on an assistant message with tool_calls)
            {"model": "fake-model", "messages": [{"role": "user", "content": None}]},
            "messages[0].content",
        ),
        (
            {
                "model": "fake-model",
                "messages": [{"role": "user", "content": "x"}, {"role": "assistant"}],
            },
            "messages[1].content",
        ),
        (  # a tool reply must answer a call of the assistant message before it
            {
                "model": "fake-model",
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "tool", "tool_call_id": "call_nope", "content": "x"},
                ],
            },
            "messages[1].tool_call_id",
        ),
        (  # vLLM's continuation needs an assistant message of text at the end
            {
                "model": "fake-model",
                "messages": [{"role": "user", "content": "x"}],
                "continue_final_message": True,
            },
            "continue_final_message",
        ),
    ],
)
def test_param_has_no_union_member_suffix(
    fake_server: ThreadServer, body: dict, param: str
) -> None:  # type: ignore[type-arg]
    path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
    r = post(fake_server, path, json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


def test_missing_body_says_so(fake_server: ThreadServer) -> None:
    r = post(fake_server, "/v1/chat/completions")
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "The request body is missing: send a JSON object."


def test_no_value_error_prefix(fake_server: ThreadServer) -> None:
    r = post(
        fake_server,
        "/api/v1/services/aigc/text-generation/generation",
        json={"model": "fake-model", "input": {}},
    )
    assert r.status_code == 400
    assert "Value error" not in r.json()["message"]


@pytest.mark.parametrize(
    ("content", "message", "param"),
    [
        (b"{not json", "The request body is not valid JSON.", None),
        (b'{"model": "fake-model", "messages": [}', "The request body is not valid JSON.", None),
        (b"   ", "The request body is missing: send a JSON object.", None),
        (
            b"[1, 2]",
            "Invalid value for the request body: Input should be an object.",
            None,
        ),
        (
            b'{"model": "fake-model", "messages": [{"role": "user", "content": "\\ud800"}]}',
            "The request contains text that is not valid Unicode (an unpaired UTF-16 "
            "surrogate escape such as \\ud800); send well-formed text.",
            None,
        ),
        (
            b'{"messages": [{"role": "user", "content": "x"}]}',
            "Missing required parameter: 'model'.",
            "model",
        ),
    ],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings"])
def test_bodies_that_are_not_a_request_are_a_400_naming_the_problem(
    fake_server: ThreadServer, content: bytes, message: str, param: str | None, path: str
) -> None:
    if path == "/v1/embeddings" and b"messages" in content and b"model" not in content:
        content = b'{"input": "x"}'
    r = post(fake_server, path, content=content)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid_request",
    }


def test_the_key_is_checked_before_the_body(fake_server: ThreadServer) -> None:
    r = httpx.post(f"{fake_server.base_url}/v1/chat/completions", content=b"{not json")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "missing_api_key"
