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


SCHEMA_CHAT = (
    f'{{"model": "{MODEL}", "messages": {USER}, "response_format": {{"type": "json_schema", '
    '"json_schema": {"name": "n", "schema": {"type": "integer", "minimum": %s}}}}'
)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        # a free-form object: a JSON schema's bound (was a 500 from the grammar builder)
        ("/v1/chat/completions", SCHEMA_CHAT, "response_format.json_schema.schema.minimum"),
        # a tool's options (was a 500 after the answer had been generated and billed)
        (
            "/v1/responses",
            f'{{"model": "{MODEL}", "input": "hi", "tools": [{{"type": "file_search", '
            '"vector_store_ids": ["vs_x"], "ranking_options": {"hybrid_search": '
            '{"embedding_weight": %s, "text_weight": 1}}}]}',
            "tools[0].ranking_options.hybrid_search.embedding_weight",
        ),
        ("/v1/vector_stores/vs_x/search", '{"query": "q", "filters": {"type": "gt", '
         '"key": "a", "value": %s}}', "filters.value"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("value", ["NaN", "-Infinity", "1e400"])
def test_anywhere_in_a_body(
    fake_server: ThreadServer, path: str, body: str, param: str, value: str
) -> None:
    r = post(fake_server, path, body % value)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert "must be a finite number" in r.json()["error"]["message"]


def test_anywhere_in_a_body_in_each_protocols_shape(fake_server: ThreadServer) -> None:
    schema = '{"type": "json_schema", "schema": {"type": "number", "maximum": Infinity}}'
    anthropic = post(
        fake_server,
        "/v1/messages",
        f'{{"model": "{MODEL}", "max_tokens": 4, "messages": {USER}, "output_format": {schema}}}',
    )
    assert anthropic.status_code == 400
    assert anthropic.json()["error"]["type"] == "invalid_request_error"
    dashscope = post(
        fake_server,
        "/api/v1/services/aigc/text-generation/generation",
        f'{{"model": "{MODEL}", "input": {{"messages": {USER}}}, "parameters": '
        '{"response_format": {"type": "json_object", "x": NaN}}}',
    )
    assert (dashscope.status_code, dashscope.json()["code"]) == (400, "InvalidParameter")
    # a string that spells NaN is text, not a number: answered
    text = post(
        fake_server, "/v1/chat/completions", f'{{"model": "{MODEL}", "messages": '
        '[{"role": "user", "content": "NaN and Infinity and 1e999"}]}',
    )  # fmt: skip
    assert text.status_code == 200
