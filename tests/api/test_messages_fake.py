"""Anthropic's Messages API over a real uvicorn server and the scripted FakeEngine, through
the official ``anthropic`` SDK and raw HTTP (golden SSE bytes, error shapes, the ledger)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.support import ThreadServer, db_execute, usage_rows

MODEL = "fake-model"
MSG: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]  # 6 "tokens"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
MSG_ID = re.compile(r"msg_[0-9a-f]{24}")
TOOLU_ID = re.compile(r"toolu_[0-9a-f]{24}")


_OPEN: list[anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def client(server: ThreadServer, **kw: Any) -> anthropic.Anthropic:
    """An SDK client of ``server`` (closed after the test), with its key as ``x-api-key``
    unless ``kw`` says otherwise."""
    if "auth_token" not in kw:
        kw.setdefault("api_key", server.api_key)  # type: ignore[attr-defined]
    made = anthropic.Anthropic(base_url=server.base_url, max_retries=0, **kw)
    _OPEN.append(made)
    return made


def post(
    server: ThreadServer, body: dict[str, Any], path: str = "/v1/messages", **headers: str
) -> httpx.Response:
    head = {"x-api-key": server.api_key, "anthropic-version": "2023-06-01", **headers}  # type: ignore[attr-defined]
    return httpx.post(f"{server.base_url}{path}", json=body, headers=head)


def key_id(server: ThreadServer) -> str:
    return server.api_key.split("_")[0].removeprefix("mg-")  # type: ignore[attr-defined]


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n")
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_create_with_the_sdk(fake_server: ThreadServer) -> None:
    m = client(fake_server).messages.create(model=MODEL, max_tokens=16, messages=MSG)
    assert MSG_ID.fullmatch(m.id)
    assert (m.type, m.role, m.model) == ("message", "assistant", MODEL)
    assert [(b.type, b.text) for b in m.content] == [("text", "Paris is the capital of France.")]  # type: ignore[union-attr]
    assert (m.stop_reason, m.stop_sequence) == ("end_turn", None)
    assert (m.usage.input_tokens, m.usage.output_tokens) == (6, 6)
    assert (m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens) == (0, 0)
    rows = usage_rows(fake_server, expect=1)
    assert [
        (r["endpoint"], r["model"], r["prompt_tokens"], r["completion_tokens"], r["status"])
        for r in rows
    ] == [("messages", MODEL, 6, 6, 200)]
    assert rows[0]["finish_reason"] == "stop"


def test_bearer_and_x_api_key_both_authenticate(fake_server: ThreadServer) -> None:
    key = fake_server.api_key  # type: ignore[attr-defined]
    bearer = client(fake_server, auth_token=key)
    assert bearer.messages.create(model=MODEL, max_tokens=2, messages=MSG).content
    r = httpx.post(
        f"{fake_server.base_url}/v1/messages",
        json={"model": MODEL, "max_tokens": 2, "messages": MSG},
        headers={"x-api-key": key},  # no anthropic-version: accepted, never required
    )
    assert r.status_code == 200 and r.headers["request-id"]
    assert len(usage_rows(fake_server, expect=2)) == 2


def test_stream_with_the_sdk(fake_server: ThreadServer) -> None:
    with client(fake_server).messages.stream(model=MODEL, max_tokens=16, messages=MSG) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Paris is the capital of France."
    assert [(b.type, b.text) for b in final.content] == [("text", text)]  # type: ignore[union-attr]
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == (
        "end_turn",
        6,
        6,
    )
    rows = usage_rows(fake_server, expect=1)
    assert [(r["endpoint"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
        ("messages", 6, 6)
    ]


def test_stream_wire_bytes_golden(fake_server: ThreadServer) -> None:
    r = post(fake_server, {"model": MODEL, "max_tokens": 3, "messages": MSG, "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    usage = '"usage":{"input_tokens":6,"cache_creation_input_tokens":0,"cache_read_input_tokens":0'
    message = '"id":"ID","type":"message","role":"assistant","model":"fake-model","content":[]'
    expected = (
        "event: message_start\n"
        f'data: {{"type":"message_start","message":{{{message},"stop_reason":null,'
        f'"stop_sequence":null,{usage},"output_tokens":1}}}}}}\n\n'
        'event: ping\ndata: {"type":"ping"}\n\n'
        "event: content_block_start\n"
        'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
        + "".join(
            "event: content_block_delta\n"
            f'data: {{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{t}"}}}}\n\n'
            for t in ("Paris", " is", " the")
        )
        + 'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        "event: message_delta\n"
        'data: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},'
        f'{usage},"output_tokens":3}}}}\n\n'
        'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert re.sub(r'"id":"msg_[0-9a-f]{24}"', '"id":"ID"', r.text) == expected


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply=CALL)])
def test_tool_use_round_trip(fake_server: ThreadServer) -> None:
    c = client(fake_server)
    first = c.messages.create(model=MODEL, max_tokens=32, messages=MSG, tools=[WEATHER])  # type: ignore[list-item]
    assert first.stop_reason == "tool_use"
    (block,) = first.content
    assert block.type == "tool_use" and TOOLU_ID.fullmatch(block.id)
    assert (block.name, block.input) == ("get_weather", {"city": "Paris"})
    follow_up = [
        *MSG,
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": block.id, "content": "18 degrees"},
                {"type": "text", "text": "Thanks!"},
            ],
        },
    ]
    second = c.messages.create(model=MODEL, max_tokens=32, messages=follow_up, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    # the fake counts content words: 6 + 0 (the call) + "18 degrees" + "Thanks!"
    assert second.usage.input_tokens == 6 + 2 + 1
    counted = c.messages.count_tokens(model=MODEL, messages=follow_up, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    assert counted.input_tokens == 9


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply="Let me check. " + CALL)])
def test_streamed_text_then_tool_use(fake_server: ThreadServer) -> None:
    body = {"model": MODEL, "max_tokens": 32, "messages": MSG, "tools": [WEATHER], "stream": True}
    events = sse_events(post(fake_server, body).text)
    start = next(d for n, d in events if n == "content_block_start" and d["index"] == 1)
    assert TOOLU_ID.fullmatch(start["content_block"]["id"])
    assert start["content_block"] == {
        "type": "tool_use",
        "id": start["content_block"]["id"],
        "name": "get_weather",
        "input": {},
    }
    partial = [
        d["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    assert partial == ['{"city": ', '"Paris"}']
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert text == "Let me check. "
    assert [n for n, _ in events if n.startswith("content_block_st")] == [
        "content_block_start",
        "content_block_stop",
        "content_block_start",
        "content_block_stop",
    ]
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    with client(fake_server).messages.stream(
        model=MODEL,
        max_tokens=32,
        messages=MSG,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    ) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]


def test_stop_sequence_is_reported(fake_server: ThreadServer) -> None:
    c = client(fake_server)
    m = c.messages.create(
        model=MODEL, max_tokens=16, messages=MSG, stop_sequences=["nothing", "capital"]
    )
    assert m.content[0].text == "Paris is the "  # type: ignore[union-attr]
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", "capital")
    with c.messages.stream(
        model=MODEL, max_tokens=16, messages=MSG, stop_sequences=["France"]
    ) as s:
        final = s.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "France")


def test_system_prompts_unknown_fields_and_attribution(fake_server: ThreadServer) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 4,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0.1; cch=abc;"},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "system", "content": "Answer in English."},
            {"role": "user", "content": [{"type": "text", "text": "Hi there", "citations": []}]},
            {"role": "user", "content": "What now?"},
        ],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u-1"},
        "context_management": {"edits": []},
        "a_field_from_next_year": {"x": 1},
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
    }
    r = post(fake_server, body, **{"anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert r.status_code == 200, r.text
    # "Be brief." + "Answer in English." + "Hi there" + "What now?": the attribution is dropped
    assert r.json()["usage"]["input_tokens"] == 2 + 3 + 2 + 2
    counted = post(fake_server, body, "/v1/messages/count_tokens")
    assert counted.status_code == 200 and counted.json() == {"input_tokens": 9}


def test_count_tokens_is_exact_and_not_billed(fake_server: ThreadServer) -> None:
    c = client(fake_server)
    counted = c.messages.count_tokens(model=MODEL, messages=MSG, system="Be brief.")
    created = c.messages.create(model=MODEL, max_tokens=2, messages=MSG, system="Be brief.")
    assert counted.input_tokens == created.usage.input_tokens == 8
    rows = usage_rows(fake_server, expect=1)
    assert [r["endpoint"] for r in rows] == ["messages"]  # count_tokens left no record


def test_image_block_refused_naming_it(fake_server: ThreadServer) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}
    content = [{"type": "text", "text": "What is this?"}, image]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(fake_server).messages.create(
            model=MODEL,
            max_tokens=4,
            messages=[{"role": "user", "content": content}],  # type: ignore[list-item]
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "'image'" in body["error"]["message"]
    assert "messages[0].content[1]" in body["error"]["message"]


def test_errors_in_anthropics_shape(fake_server: ThreadServer) -> None:
    c = client(fake_server)
    with pytest.raises(anthropic.BadRequestError) as bad:
        c.messages.create(model=MODEL, max_tokens=0, messages=MSG)
    assert bad.value.status_code == 400
    assert "max_tokens" in bad.value.body["error"]["message"]  # type: ignore[index]
    missing = post(fake_server, {"model": MODEL, "messages": MSG})
    assert missing.status_code == 400
    assert missing.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Missing required parameter: 'max_tokens'.",
        },
        "request_id": missing.json()["request_id"],
    }
    temp = post(fake_server, {"model": MODEL, "max_tokens": 2, "messages": MSG, "temperature": 1.5})
    assert temp.status_code == 400 and "'temperature'" in temp.json()["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError) as unauth:
        client(fake_server, api_key="mg-nope_nope").messages.create(
            model=MODEL, max_tokens=2, messages=MSG
        )
    assert unauth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as unknown:
        c.messages.create(model="claude-sonnet-4-5", max_tokens=2, messages=MSG)
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        c.messages.count_tokens(model="claude-sonnet-4-5", messages=MSG)
    choice = post(
        fake_server,
        {"model": MODEL, "max_tokens": 2, "messages": MSG, "tools": [WEATHER],
         "tool_choice": {"type": "tool", "name": "nope"}},
    )  # fmt: skip
    assert choice.status_code == 400 and "tool_choice.name" in choice.json()["error"]["message"]
    server_tool = {"type": "web_search_20250305", "name": "web_search"}
    refused = post(
        fake_server, {"model": MODEL, "max_tokens": 2, "messages": MSG, "tools": [server_tool]}
    )
    assert refused.status_code == 400 and "tools[0].type" in refused.json()["error"]["message"]
    assert usage_rows(fake_server, expect=0, timeout_s=0.3) == []  # nothing reached the engine


def test_a_prefill_is_accepted_but_not_with_trailing_whitespace(
    fake_server: ThreadServer,
) -> None:
    prefill = [*MSG, {"role": "assistant", "content": "The answer is"}]
    ok = post(fake_server, {"model": MODEL, "max_tokens": 4, "messages": prefill})
    assert ok.status_code == 200 and ok.json()["role"] == "assistant"
    spaced = [*MSG, {"role": "assistant", "content": "The answer is "}]
    bad = post(fake_server, {"model": MODEL, "max_tokens": 4, "messages": spaced})
    assert bad.status_code == 400
    assert bad.json()["error"] == {
        "type": "invalid_request_error",
        "message": "messages: final assistant content cannot end with trailing whitespace",
    }


def test_a_tool_result_must_answer_the_previous_tool_use(fake_server: ThreadServer) -> None:
    orphan = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "18 degrees"},
        ]},
    ]  # fmt: skip
    bad = post(fake_server, {"model": MODEL, "max_tokens": 4, "messages": orphan})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert "'toolu_2'" in bad.json()["error"]["message"]
    assert "messages[2].content[0]" in bad.json()["error"]["message"]
    orphan[2]["content"][0]["tool_use_id"] = "toolu_1"  # type: ignore[index]
    ok = post(fake_server, {"model": MODEL, "max_tokens": 4, "messages": orphan})
    assert ok.status_code == 200


def test_key_not_scoped_to_the_model_is_403(fake_server: ThreadServer) -> None:
    db_execute(
        fake_server,
        "UPDATE api_keys SET allowed_models = :m WHERE id = :id",
        m='["other-model"]',
        id=key_id(fake_server),
    )
    c = client(fake_server)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        c.messages.create(model=MODEL, max_tokens=2, messages=MSG)
    assert denied.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError):
        c.messages.count_tokens(model=MODEL, messages=MSG)


def test_rate_limit_is_429_in_anthropics_shape(fake_server: ThreadServer) -> None:
    db_execute(
        fake_server, "UPDATE api_keys SET rpm_limit = 1 WHERE id = :id", id=key_id(fake_server)
    )
    c = client(fake_server)
    c.messages.create(model=MODEL, max_tokens=2, messages=MSG)
    with pytest.raises(anthropic.RateLimitError) as limited:
        c.messages.create(model=MODEL, max_tokens=2, messages=MSG)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(limited.value.response.headers["retry-after"]) >= 1
    streamed = post(fake_server, {"model": MODEL, "max_tokens": 2, "messages": MSG, "stream": True})
    assert streamed.status_code == 429  # before the first byte: plain JSON
    assert streamed.json()["error"]["type"] == "rate_limit_error"
    assert len(usage_rows(fake_server, expect=1)) == 1


def test_body_too_large_is_413_request_too_large(server_factory: ServerFactory) -> None:
    small = server_factory(server={"max_body_bytes": 10_000})
    big = [{"role": "user", "content": "x" * 20_000}]
    r = post(small, {"model": MODEL, "max_tokens": 2, "messages": big})
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "request_too_large"


@pytest.mark.parametrize("fake_engine", [FakeEngine(fail_after_tokens=2)])
def test_failure_mid_stream_is_an_error_event(fake_server: ThreadServer) -> None:
    r = post(fake_server, {"model": MODEL, "max_tokens": 8, "messages": MSG, "stream": True})
    assert r.status_code == 200
    events = sse_events(r.text)
    assert [n for n, _ in events][:2] == ["message_start", "ping"]
    name, data = events[-1]
    assert name == "error"
    assert data["type"] == "error" and data["error"]["type"] == "api_error"
    assert "message_stop" not in [n for n, _ in events]
    rows = usage_rows(fake_server, expect=1)
    assert [(r["status"], r["completion_tokens"]) for r in rows] == [(500, 2)]


def test_the_docs_example_runs(fake_server: ThreadServer) -> None:
    """docs/anthropic.md's example, against this server (its URL, key and model)."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "anthropic.md"
    [code] = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    code = (
        code.replace("http://127.0.0.1:8000", fake_server.base_url)
        .replace("mg-…", fake_server.api_key)  # type: ignore[attr-defined]
        .replace("qwen2.5-coder-0.5b-instruct", MODEL)
        .replace("max_tokens=256", "max_tokens=16")
    )
    scope: dict[str, Any] = {}
    exec(compile(code, str(doc), "exec"), scope)
    scope["client"].close()
    assert scope["message"].content[0].text == "Paris is the capital of France."


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (
            {
                "output_format": {
                    "type": "json_schema",
                    "schema": {"type": "number", "multipleOf": 2},
                }
            },
            "multipleOf",
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {"not": {}}}}},
            "not",
        ),
        ({"output_format": {"type": "xml"}}, "output_format"),
        (
            {
                "tools": [{"name": "f", "input_schema": {"type": "object", "uniqueItems": True}}],
                "tool_choice": {"type": "any"},
            },
            "uniqueItems",
        ),
    ],
)
def test_schemas_the_grammar_cannot_enforce_are_refused_naming_the_keyword(
    fake_server: ThreadServer, extra: dict[str, Any], named: str
) -> None:
    body = {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    r = post(fake_server, {**body, **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert named in r.json()["error"]["message"]


def test_an_enforceable_output_format_is_accepted(fake_server: ThreadServer) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    body = {
        "model": MODEL,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}],
        "output_format": {"type": "json_schema", "schema": schema},
    }
    assert post(fake_server, body).status_code == 200
