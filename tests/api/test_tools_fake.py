"""Function calling, response_format and logprobs on the OpenAI surface, over a real uvicorn
server and the scripted FakeEngine (whose reply goes through the real tool-call parser)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import openai
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.support import ThreadServer

MODEL = "fake-model"
MSG = [{"role": "user", "content": "Weather in Paris?"}]  # 3 "tokens"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TWO_CALLS = (
    CALL + '\n<tool_call>\n{"name": "get_time", "arguments": {"city": "Tokyo"}}\n</tool_call>'
)
CALL_ID = re.compile(r"call_[0-9a-f]{24}")


def post(server: ThreadServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": MSG, **body},
        headers={"Authorization": f"Bearer {server.api_key}"},  # type: ignore[attr-defined]
    )


def events(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.text.endswith("data: [DONE]\n\n"), r.text
    return [json.loads(e[6:]) for e in r.text.split("\n\n") if e.startswith("data: {")]


def client(server: ThreadServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply=CALL)])
def test_tool_call_response_wire_shape(fake_server: ThreadServer) -> None:
    r = post(fake_server, {"tools": [WEATHER]})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert CALL_ID.fullmatch(call["id"])
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert r.json()["usage"]["completion_tokens"] == len(CALL.split(" "))


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply=CALL)])
def test_streamed_tool_call_wire_shape(fake_server: ThreadServer) -> None:
    chunks = events(post(fake_server, {"tools": [WEATHER], "stream": True}))
    deltas = [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks]
    call_id = deltas[1][0]["tool_calls"][0]["id"]
    assert CALL_ID.fullmatch(call_id)
    assert deltas == [
        ({"role": "assistant", "content": ""}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, None),
        ({}, "tool_calls"),
    ]


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply="Let me check. " + TWO_CALLS)])
def test_parallel_calls_with_text_stream_and_sdk(fake_server: ThreadServer) -> None:
    c = client(fake_server)
    r = c.chat.completions.create(model=MODEL, messages=MSG, tools=[WEATHER, TIME])  # type: ignore[arg-type,list-item]
    msg = r.choices[0].message
    assert msg.content == "Let me check. "
    assert [(t.function.name, json.loads(t.function.arguments)) for t in msg.tool_calls or []] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"city": "Tokyo"}),
    ]
    assert r.choices[0].finish_reason == "tool_calls"

    stream = c.chat.completions.create(
        model=MODEL,
        messages=MSG,
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        stream=True,  # type: ignore[arg-type]
    )
    text, calls, finish = "", {}, None
    for chunk in stream:
        d = chunk.choices[0].delta
        text += d.content or ""
        for tc in d.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                entry["id"], entry["name"] = tc.id, tc.function.name  # type: ignore[union-attr]
            entry["arguments"] += tc.function.arguments or ""  # type: ignore[union-attr]
        finish = chunk.choices[0].finish_reason or finish
    assert text == "Let me check. " and finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert [json.loads(calls[i]["arguments"]) for i in (0, 1)] == [
        {"city": "Paris"},
        {"city": "Tokyo"},
    ]
    assert all(CALL_ID.fullmatch(calls[i]["id"]) for i in (0, 1))


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply=TWO_CALLS)])
def test_parallel_tool_calls_false_keeps_the_first(fake_server: ThreadServer) -> None:
    r = post(fake_server, {"tools": [WEATHER, TIME], "parallel_tool_calls": False}).json()
    calls = r["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert r["choices"][0]["finish_reason"] == "tool_calls"


MALFORMED = '<tool_call>\n{"name": "get_weather", "arguments": {"city": </tool_call>'
UNKNOWN = '<tool_call>\n{"name": "launch_rocket", "arguments": {}}\n</tool_call>'


@pytest.mark.parametrize(
    "fake_engine", [FakeEngine(reply=MALFORMED), FakeEngine(reply=UNKNOWN)], ids=["bad", "unknown"]
)
def test_unparseable_call_is_returned_as_text(
    fake_server: ThreadServer, fake_engine: FakeEngine
) -> None:
    r = post(fake_server, {"tools": [WEATHER]})
    assert r.status_code == 200
    choice = r.json()["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": fake_engine.reply, "refusal": None}
    assert choice["finish_reason"] == "stop"
    chunks = events(post(fake_server, {"tools": [WEATHER], "stream": True}))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == fake_engine.reply
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply=CALL)])
def test_tool_choice_none_and_no_tools_leave_the_text_alone(fake_server: ThreadServer) -> None:
    for body in ({"tools": [WEATHER], "tool_choice": "none"}, {}):
        choice = post(fake_server, body).json()["choices"][0]
        assert choice["message"]["content"] == CALL and "tool_calls" not in choice["message"]
        assert choice["finish_reason"] == "stop"


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply="It is sunny.")])
def test_round_trip_with_a_tool_result_is_accepted(fake_server: ThreadServer) -> None:
    messages = [
        *MSG,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'},
    ]
    for choice in ("auto", {"type": "function", "function": {"name": "get_weather"}}):
        r = post(fake_server, {"messages": messages, "tools": [WEATHER], "tool_choice": choice})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "It is sunny."


BAD_SCHEMA = {"type": "object", "properties": {"a": {"type": "strang"}}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": BAD_SCHEMA}}]},
            "tools[0].function.parameters",
        ),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": BAD_SCHEMA},
                }
            },
            "response_format",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": [1]},
                }
            },
            "response_format",
        ),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        (
            {"messages": [*MSG, {"role": "tool", "content": "x"}]},
            "messages[1].tool_call_id",
        ),
        (
            {
                "messages": [
                    *MSG,
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f"}}]},
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
    ],
)
def test_invalid_tool_and_format_parameters_are_400(
    fake_server: ThreadServer, body: dict[str, Any], param: str
) -> None:
    for stream in (False, True):
        r = post(fake_server, {**body, "stream": stream})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert (err["type"], err["param"]) == ("invalid_request_error", param), err
        assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply='{"city": "Paris"}')])
def test_response_formats_are_accepted(fake_server: ThreadServer) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    for fmt in (
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}},
    ):
        r = post(fake_server, {"response_format": fmt})
        assert r.status_code == 200, r.text
        assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"city": "Paris"}


def test_logprobs_shape(fake_server: ThreadServer) -> None:
    r = post(fake_server, {"logprobs": True, "top_logprobs": 2, "max_tokens": 3}).json()
    lp = r["choices"][0]["logprobs"]
    assert lp["refusal"] is None
    assert [e["token"] for e in lp["content"]] == ["Paris", " is", " the"]
    assert lp["content"][1] == {
        "token": " is",
        "logprob": -0.5,
        "bytes": list(b" is"),
        "top_logprobs": [
            {"token": " is", "logprob": -0.5, "bytes": list(b" is")},
            {"token": "alt1", "logprob": -1.5, "bytes": list(b"alt1")},
        ],
    }
    assert len(lp["content"]) == r["usage"]["completion_tokens"]
    no_top = post(fake_server, {"logprobs": True, "max_tokens": 1}).json()["choices"][0]
    assert no_top["logprobs"]["content"][0]["top_logprobs"] == []
    assert post(fake_server, {"max_tokens": 1}).json()["choices"][0]["logprobs"] is None


def test_streamed_logprobs_ride_with_their_chunks(fake_server: ThreadServer) -> None:
    chunks = events(post(fake_server, {"logprobs": True, "top_logprobs": 1, "stream": True}))
    assert chunks[0]["choices"][0]["logprobs"] is None  # the role chunk
    for c in chunks[1:-1]:
        choice = c["choices"][0]
        tokens = [e["token"] for e in choice["logprobs"]["content"]]
        assert "".join(tokens) == choice["delta"]["content"]
        assert all(len(e["top_logprobs"]) == 1 for e in choice["logprobs"]["content"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    sdk = client(fake_server).chat.completions.create(
        model=MODEL,
        messages=MSG,  # type: ignore[arg-type]
        logprobs=True,
        stream=True,
        max_tokens=2,
    )
    got = [
        t.token
        for ch in sdk
        if ch.choices and ch.choices[0].logprobs
        for t in ch.choices[0].logprobs.content or []
    ]
    assert got == ["Paris", " is"]


def test_stream_options_need_a_stream(fake_server: ThreadServer) -> None:
    """As OpenAI: ``stream_options`` without ``stream: true`` is a 400 naming it."""
    for extra in ({}, {"stream": False}):
        r = post(fake_server, {**extra, "stream_options": {"include_usage": True}})
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {
            "message": "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "type": "invalid_request_error",
            "param": "stream_options",
            "code": "invalid_request",
        }
    r = post(fake_server, {"stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and '"usage":{' in r.text.replace(" ", "")
