"""DashScope's native API (and its OpenAI-compatible mode) over a real uvicorn server and the
scripted FakeEngine, called with the official ``dashscope`` and ``openai`` SDKs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import dashscope
import httpx
import openai
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.support import ThreadServer, usage_rows

MODEL = "fake-model"
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
MSG = [{"role": "user", "content": "What is the capital of France?"}]  # 6 "tokens"
REPLY = "Paris is the capital of France."
WORDS = ["Paris", " is", " the", " capital", " of", " France."]
PATH = "/api/v1/services/aigc/text-generation/generation"


@pytest.fixture
def ds(fake_server: ThreadServer, monkeypatch: pytest.MonkeyPatch) -> ThreadServer:
    """The server, with the dashscope SDK pointed at it (only the base URL changes)."""
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{fake_server.base_url}/api/v1")
    return fake_server


def key(server: ThreadServer) -> str:
    return server.api_key  # type: ignore[attr-defined,no-any-return]


def call(server: ThreadServer, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", MSG)
    return dashscope.Generation.call(
        model=kwargs.pop("model", MODEL), api_key=key(server), **kwargs
    )


def post(
    server: ThreadServer, body: object, *, sse: bool = False, api_key: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api_key or key(server)}"}
    if sse:
        headers["X-DashScope-SSE"] = "enable"
    payload = {"content": body} if isinstance(body, bytes) else {"json": body}
    return httpx.post(f"{server.base_url}{PATH}", headers=headers, **payload)  # type: ignore[arg-type]


def sse_events(text: str) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(event, HTTP status, data) for each DashScope-framed event."""
    for block in text.split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(":", 1) for line in block.split("\n") if not line.startswith(":"))
        status = next(line for line in block.split("\n") if line.startswith(":HTTP_STATUS/"))
        yield fields["event"], int(status.rsplit("/", 1)[1]), json.loads(fields["data"])


# -- non-streaming ------------------------------------------------------------------------


def test_text_format_with_usage_and_metering(ds: ThreadServer) -> None:
    r = call(ds)
    assert r.status_code == HTTPStatus.OK
    assert (r.output.text, r.output.finish_reason) == (REPLY, "stop")
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (6, 6, 12)
    assert re.fullmatch(r"[0-9a-f]{32}", r.request_id)
    row = usage_rows(ds, expect=1)[0]
    assert row["request_id"] == r.request_id
    assert (row["endpoint"], row["model"], row["prompt_tokens"], row["completion_tokens"]) == (
        "dashscope.generation",
        MODEL,
        6,
        6,
    )
    assert (row["status"], row["finish_reason"]) == (200, "stop")
    assert row["ttft_ms"] is not None


def test_message_format(ds: ThreadServer) -> None:
    r = call(ds, result_format="message")
    assert r.status_code == HTTPStatus.OK
    choice = r.output.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", REPLY)
    assert choice.finish_reason == "stop"
    assert r.usage.output_tokens == 6


def test_raw_body_shape(ds: ThreadServer) -> None:
    r = post(ds, {"model": MODEL, "input": {"messages": MSG}, "parameters": {"max_tokens": 2}})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body == {
        "status_code": 200,
        "request_id": r.headers["x-request-id"],
        "code": "",
        "message": "",
        "output": {"text": "Paris is", "finish_reason": "length"},
        "usage": {"input_tokens": 6, "output_tokens": 2, "total_tokens": 8},
    }


def test_prompt_input_and_stop(ds: ThreadServer) -> None:
    r = call(ds, messages=None, prompt="What is the capital of France?", stop="capital of")
    assert (r.output.text, r.output.finish_reason) == ("Paris is the ", "stop")
    assert r.usage.input_tokens == 6


def test_max_tokens_gives_length(ds: ThreadServer) -> None:
    r = call(ds, max_tokens=2, result_format="message")
    assert r.output.choices[0].message.content == "Paris is"
    assert r.output.choices[0].finish_reason == "length"
    assert r.usage.output_tokens == 2


def test_n_choices_in_message_format(ds: ThreadServer) -> None:
    r = call(ds, n=2, max_tokens=2, result_format="message")
    assert [(c.index, c.message.content) for c in r.output.choices] == [
        (0, "Paris is"),
        (1, "Paris is"),
    ]
    assert r.usage.output_tokens == 4


def test_unknown_vendor_parameters_are_accepted(ds: ThreadServer) -> None:
    r = call(
        ds,
        enable_search=True,
        enable_thinking=False,
        thinking_budget=100,
        search_options={"forced_search": True},
        top_k=50,
        repetition_penalty=1.1,
        some_future_switch={"x": 1},
    )
    assert r.status_code == HTTPStatus.OK and r.output.text == REPLY


# -- streaming ----------------------------------------------------------------------------


@pytest.mark.parametrize("result_format", ["text", "message"])
@pytest.mark.parametrize("incremental", [True, False])
def test_sdk_stream(ds: ThreadServer, result_format: str, incremental: bool) -> None:
    events = list(
        call(ds, stream=True, incremental_output=incremental, result_format=result_format)
    )
    assert all(e.status_code == HTTPStatus.OK for e in events)
    if result_format == "text":
        texts = [e.output.text for e in events]
        reasons = [e.output.finish_reason for e in events]
    else:
        texts = [e.output.choices[0].message.content for e in events]
        reasons = [e.output.choices[0].finish_reason for e in events]
    if incremental:
        assert texts == [*WORDS, ""]
    else:  # each event carries the text so far
        assert texts == [*("".join(WORDS[: i + 1]) for i in range(6)), REPLY]
    assert reasons == ["null"] * 6 + ["stop"]
    assert [e.usage.output_tokens for e in events] == [1, 2, 3, 4, 5, 6, 6]
    assert {
        (e.usage.input_tokens, e.usage.total_tokens - e.usage.output_tokens) for e in events
    } == {(6, 6)}
    assert len({e.request_id for e in events}) == 1


def test_stream_is_metered_once(ds: ThreadServer) -> None:
    events = list(call(ds, stream=True, incremental_output=True, max_tokens=4))
    assert events[-1].output.finish_reason == "length"
    rows = usage_rows(ds, expect=1)
    assert len(rows) == 1
    row = rows[0]
    assert (row["request_id"], row["prompt_tokens"], row["completion_tokens"]) == (
        events[0].request_id,
        6,
        4,
    )
    assert (row["status"], row["finish_reason"], row["endpoint"]) == (
        200,
        "length",
        "dashscope.generation",
    )


def _normalise(body: bytes) -> str:
    return re.sub(r'"request_id":"[0-9a-f]{32}"', '"request_id":"RID"', body.decode())


def test_stream_wire_bytes_golden(ds: ThreadServer) -> None:
    body = {"model": MODEL, "input": {"messages": MSG}, "parameters": {"max_tokens": 3}}
    r = post(ds, body, sse=True)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"

    def event(n: int, text: str, reason: str, out_tokens: int) -> str:
        return (
            f"id:{n}\nevent:result\n:HTTP_STATUS/200\n"
            f'data:{{"output":{{"text":"{text}","finish_reason":"{reason}"}},'
            f'"usage":{{"input_tokens":6,"output_tokens":{out_tokens},'
            f'"total_tokens":{6 + out_tokens}}},"request_id":"RID"}}\n\n'
        )

    expected = (
        event(1, "Paris", "null", 1)
        + event(2, "Paris is", "null", 2)
        + event(3, "Paris is the", "null", 3)
        + event(4, "Paris is the", "length", 3)
    )
    assert _normalise(r.content) == expected


def test_raw_incremental_message_stream_and_accept_header(ds: ThreadServer) -> None:
    body = {
        "model": MODEL,
        "input": {"messages": MSG},
        "parameters": {"result_format": "message", "incremental_output": True, "max_tokens": 2},
    }
    r = httpx.post(
        f"{ds.base_url}{PATH}",
        json=body,
        headers={"Authorization": f"Bearer {key(ds)}", "Accept": "text/event-stream"},
    )
    events = list(sse_events(r.text))
    assert [(e, s) for e, s, _ in events] == [("result", 200)] * 3
    assert [d["output"]["choices"] for _, _, d in events] == [
        [{"finish_reason": "null", "message": {"role": "assistant", "content": "Paris"}}],
        [{"finish_reason": "null", "message": {"role": "assistant", "content": " is"}}],
        [{"finish_reason": "length", "message": {"role": "assistant", "content": ""}}],
    ]
    assert {d["request_id"] for _, _, d in events} == {r.headers["x-request-id"]}


@pytest.mark.parametrize("fake_engine", [FakeEngine(fail_after_tokens=2)])
def test_mid_stream_failure_ends_with_error_event(ds: ThreadServer) -> None:
    r = post(ds, {"model": MODEL, "input": {"messages": MSG}}, sse=True)
    assert r.status_code == 200
    events = list(sse_events(r.text))
    assert [e for e, _, _ in events] == ["result", "result", "error"]
    _, status, data = events[-1]
    assert status == 500
    assert data == {
        "request_id": r.headers["x-request-id"],
        "code": "InternalError",
        "message": "The fake engine failed on purpose.",
    }
    assert r.text.split("\n\n")[2].startswith("id:3\nevent:error\n:HTTP_STATUS/500\ndata:")
    row = usage_rows(ds, expect=1)[0]
    assert (row["completion_tokens"], row["status"], row["finish_reason"]) == (2, 500, "error")
    # the SDK surfaces it as an error response, not a silent end
    last = list(call(ds, stream=True, incremental_output=True))[-1]
    assert (last.code, last.message) == ("InternalError", "The fake engine failed on purpose.")


# -- function calling ---------------------------------------------------------------------


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply=CALL)])
def test_sdk_tool_call_and_metering(ds: ThreadServer) -> None:
    r = call(ds, tools=[WEATHER], result_format="message")
    assert r.status_code == HTTPStatus.OK, r
    choice = r.output.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert (choice.message.role, choice.message.content) == ("assistant", "")
    (tool_call,) = choice.message.tool_calls
    assert CALL_ID.fullmatch(tool_call["id"])
    assert (tool_call["type"], tool_call["index"]) == ("function", 0)
    assert tool_call["function"]["name"] == "get_weather"
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "Paris"}
    assert r.usage.output_tokens == len(CALL.split(" "))
    row = usage_rows(ds, expect=1)[0]
    assert (row["request_id"], row["finish_reason"]) == (r.request_id, "tool_calls")


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply=CALL)])
def test_raw_tool_call_body_shape(ds: ThreadServer) -> None:
    body = {
        "model": MODEL,
        "input": {"messages": MSG},
        "parameters": {"result_format": "message", "tools": [WEATHER]},
    }
    r = post(ds, body)
    assert r.status_code == 200, r.text
    got = r.json()
    call_id = got["output"]["choices"][0]["message"]["tool_calls"][0]["id"]
    assert CALL_ID.fullmatch(call_id)
    tokens = len(CALL.split(" "))
    assert got == {
        "status_code": 200,
        "request_id": r.headers["x-request-id"],
        "code": "",
        "message": "",
        "output": {
            "choices": [
                {
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [
                            {
                                "id": call_id,
                                "type": "function",
                                "function": {
                                    "name": "get_weather",
                                    "arguments": '{"city": "Paris"}',
                                },
                                "index": 0,
                            }
                        ],
                    },
                }
            ]
        },
        "usage": {"input_tokens": 6, "output_tokens": tokens, "total_tokens": 6 + tokens},
    }


def _tool_stream(ds: ThreadServer, incremental: bool) -> list[dict[str, Any]]:
    body = {
        "model": MODEL,
        "input": {"messages": MSG},
        "parameters": {
            "result_format": "message",
            "tools": [WEATHER],
            "incremental_output": incremental,
        },
    }
    r = post(ds, body, sse=True)
    assert r.status_code == 200, r.text
    events = list(sse_events(r.text))
    assert {(e, s) for e, s, _ in events} == {("result", 200)}
    return [d["output"]["choices"][0] for _, _, d in events]


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply=CALL)])
def test_streamed_tool_call_wire_shape(ds: ThreadServer) -> None:
    incremental = _tool_stream(ds, incremental=True)
    call_id = incremental[0]["message"]["tool_calls"][0]["id"]
    assert CALL_ID.fullmatch(call_id)

    def choice(reason: str, calls: list[dict[str, Any]] | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        if calls is not None:
            message["tool_calls"] = calls
        return {"finish_reason": reason, "message": message}

    def piece(arguments: str) -> dict[str, Any]:
        return {"index": 0, "id": "", "type": "function", "function": {"arguments": arguments}}

    def whole(arguments: str) -> dict[str, Any]:
        function = {"name": "get_weather", "arguments": arguments}
        return {"id": call_id, "type": "function", "function": function, "index": 0}

    opening = {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert incremental == [
        choice("null", [opening]),
        choice("null", [piece('{"city": ')]),
        choice("null", [piece('"Paris"}')]),
        choice("tool_calls", None),
    ]
    # without incremental_output each event carries the call so far, the last one whole
    so_far = _tool_stream(ds, incremental=False)
    call_id = so_far[0]["message"]["tool_calls"][0]["id"]
    assert so_far == [
        choice("null", [whole("")]),
        choice("null", [whole('{"city": ')]),
        choice("null", [whole('{"city": "Paris"}')]),
        choice("tool_calls", [whole('{"city": "Paris"}')]),
    ]


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply="Let me check. " + CALL)])
@pytest.mark.parametrize("incremental", [True, False, None])
def test_sdk_tool_call_stream(ds: ThreadServer, incremental: bool | None) -> None:
    """True: deltas as sent; False: the SDK asks for deltas and merges them itself; None
    (not sent): the server sends everything so far."""
    kw: dict[str, Any] = {} if incremental is None else {"incremental_output": incremental}
    events = list(call(ds, tools=[WEATHER], result_format="message", stream=True, **kw))
    assert all(e.status_code == HTTPStatus.OK for e in events), events[-1]
    choices = [e.output.choices[0] for e in events]
    assert [c.finish_reason for c in choices] == ["null"] * (len(choices) - 1) + ["tool_calls"]
    if incremental:
        text = "".join(c.message.content for c in choices)
        parts = [tc for c in choices for tc in c.message.get("tool_calls") or []]
        name = "".join(p["function"].get("name", "") for p in parts)
        arguments = "".join(p["function"]["arguments"] for p in parts)
        call_id = "".join(p["id"] for p in parts)
    else:
        last = choices[-1].message
        text = last.content
        (whole,) = last.tool_calls
        name, arguments, call_id = (
            whole["function"]["name"],
            whole["function"]["arguments"],
            whole["id"],
        )
    assert text == "Let me check. "
    assert (name, json.loads(arguments)) == ("get_weather", {"city": "Paris"})
    assert CALL_ID.fullmatch(call_id)
    assert events[-1].usage.output_tokens == len(("Let me check. " + CALL).split(" "))


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply="Let me check. " + TWO_CALLS)])
def test_parallel_tool_calls_only_when_asked(ds: ThreadServer) -> None:
    default = call(ds, tools=[WEATHER, TIME], result_format="message").output.choices[0]
    assert default.message.content == "Let me check. "
    assert [c["function"]["name"] for c in default.message.tool_calls] == ["get_weather"]
    both = call(
        ds, tools=[WEATHER, TIME], result_format="message", parallel_tool_calls=True
    ).output.choices[0]
    assert [(c["index"], c["function"]["name"]) for c in both.message.tool_calls] == [
        (0, "get_weather"),
        (1, "get_time"),
    ]
    assert json.loads(both.message.tool_calls[1]["function"]["arguments"]) == {"city": "Tokyo"}
    assert both.finish_reason == "tool_calls"


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply=CALL)])
def test_tool_choice_none_and_no_tools_leave_the_text_alone(ds: ThreadServer) -> None:
    for kw in ({"tools": [WEATHER], "tool_choice": "none"}, {}):
        choice = call(ds, result_format="message", **kw).output.choices[0]
        assert choice.message.content == CALL and "tool_calls" not in choice.message
        assert choice.finish_reason == "stop"


@pytest.mark.parametrize("fake_engine", [FakeEngine(reply="It is sunny.")])
def test_round_trip_with_a_tool_result_is_accepted(ds: ThreadServer) -> None:
    assistant = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                "index": 0,
            }
        ],
    }
    answers = [
        {"role": "tool", "content": '{"sky": "sunny"}', "tool_call_id": "call_1"},
        {"role": "tool", "content": '{"sky": "sunny"}', "name": "get_weather"},  # older clients
    ]
    named = {"type": "function", "function": {"name": "get_weather"}}
    for answer in answers:
        for choice in ("auto", named):
            r = call(
                ds,
                messages=[*MSG, assistant, answer],
                tools=[WEATHER],
                tool_choice=choice,
                result_format="message",
            )
            assert r.status_code == HTTPStatus.OK, r
            assert r.output.choices[0].message.content == "It is sunny."


# -- errors -------------------------------------------------------------------------------


def _assert_dashscope_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"request_id", "code", "message"}
    assert body["code"] == code and body["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text
    return body  # type: ignore[no-any-return]


def test_bad_key_is_invalid_api_key(ds: ThreadServer) -> None:
    r = dashscope.Generation.call(model=MODEL, messages=MSG, api_key="sk-wrong")
    assert (r.status_code, r.code) == (401, "InvalidApiKey")
    for sse in (False, True):
        raw = post(ds, {"model": MODEL, "input": {"messages": MSG}}, sse=sse, api_key="sk-x")
        _assert_dashscope_error(raw, 401, "InvalidApiKey")
    no_key = httpx.post(f"{ds.base_url}{PATH}", json={"model": MODEL, "input": {"prompt": "x"}})
    _assert_dashscope_error(no_key, 401, "InvalidApiKey")


def test_unknown_model_is_model_not_found(ds: ThreadServer) -> None:
    r = call(ds, model="qwen-max")
    assert (r.status_code, r.code) == (404, "ModelNotFound")
    (streamed,) = list(call(ds, model="qwen-max", stream=True))
    assert (streamed.status_code, streamed.code) == (404, "ModelNotFound")


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"temperature": 5}, "parameters.temperature"),
        ({"top_p": 0}, "parameters.top_p"),
        ({"max_tokens": 0}, "parameters.max_tokens"),
        ({"result_format": "xml"}, "parameters.result_format"),
        ({"n": 9, "result_format": "message"}, "parameters.n"),
        ({"n": 2}, "result_format 'message'"),
        ({"stop": [""]}, "non-empty"),
        ({"max_tokens": 100}, "Too long"),
        ({"tools": [WEATHER]}, "requires result_format 'message'"),
        ({"tools": [WEATHER], "result_format": "text"}, "requires result_format 'message'"),
        ({"tool_choice": "auto", "result_format": "message"}, "only allowed when 'tools'"),
        (
            {"tools": [WEATHER], "tool_choice": "sometimes", "result_format": "message"},
            "Invalid value for 'tool_choice'",
        ),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "launch"}},
                "result_format": "message",
            },
            "not in 'tools'",
        ),
        ({"tools": [WEATHER, WEATHER], "result_format": "message"}, "must be unique"),
        ({"tools": [{"type": "retrieval"}], "result_format": "message"}, "parameters.tools[0]"),
    ],
)
def test_bad_parameters_are_invalid_parameter(
    ds: ThreadServer, parameters: dict[str, Any], fragment: str
) -> None:
    for sse in (False, True):
        body = {"model": MODEL, "input": {"messages": MSG}, "parameters": parameters}
        err = _assert_dashscope_error(post(ds, body, sse=sse), 400, "InvalidParameter")
        assert fragment in err["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        {"input": {"messages": MSG}},
        {"model": MODEL},
        {"model": MODEL, "input": {}},
        {"model": MODEL, "input": {"messages": [{"role": "wizard", "content": "x"}]}},
        {"model": MODEL, "input": {"messages": [{"role": "user", "content": [{"image": "u"}]}]}},
    ],
)
def test_malformed_bodies_are_invalid_parameter(ds: ThreadServer, body: object) -> None:
    _assert_dashscope_error(post(ds, body), 400, "InvalidParameter")


def test_no_input_and_empty_messages_are_told_apart(ds: ThreadServer) -> None:
    err = _assert_dashscope_error(post(ds, {"model": MODEL, "input": {}}), 400, "InvalidParameter")
    assert "input.messages or input.prompt is required" in err["message"]
    body = {"model": MODEL, "input": {"messages": []}}
    err = _assert_dashscope_error(post(ds, body), 400, "InvalidParameter")
    assert "input.messages must not be empty" in err["message"]


def test_a_message_without_content_is_invalid_parameter_naming_it(ds: ThreadServer) -> None:
    body = {"model": MODEL, "input": {"messages": [{"role": "user", "content": None}]}}
    err = _assert_dashscope_error(post(ds, body), 400, "InvalidParameter")
    assert "input.messages[0].content" in err["message"]
    assert "needs its 'content'" in err["message"]


def test_a_body_over_the_limit_is_413_bad_request_too_large(ds: ThreadServer) -> None:
    big = {"model": MODEL, "input": {"prompt": "x" * (9 * 1024 * 1024)}}  # the default is 8 MiB
    for sse in (False, True):
        err = _assert_dashscope_error(post(ds, big, sse=sse), 413, "BadRequest.TooLarge")
        assert err["message"] == "The request body is larger than 8388608 bytes."


def test_sdk_sees_invalid_parameter(ds: ThreadServer) -> None:
    r = call(ds, temperature=5)
    assert (r.status_code, r.code) == (400, "InvalidParameter")


def test_unknown_route_under_api_v1_is_dashscope_shaped(ds: ThreadServer) -> None:
    r = httpx.post(f"{ds.base_url}/api/v1/services/aigc/nothing", json={})
    _assert_dashscope_error(r, 404, "InvalidURL")


# -- OpenAI-compatible mode ---------------------------------------------------------------


def test_compatible_mode_with_openai_sdk(fake_server: ThreadServer) -> None:
    c = openai.OpenAI(
        base_url=f"{fake_server.base_url}/compatible-mode/v1",
        api_key=key(fake_server),
        max_retries=0,
    )
    assert [m.id for m in c.models.list()] == [MODEL]
    r = c.chat.completions.create(model=MODEL, messages=MSG)  # type: ignore[arg-type]
    assert r.choices[0].message.content == REPLY and r.usage is not None
    assert r.usage.total_tokens == 12
    stream = c.chat.completions.create(model=MODEL, messages=MSG, stream=True)  # type: ignore[arg-type]
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == REPLY
    rows = usage_rows(fake_server, expect=2)
    assert {row["endpoint"] for row in rows} == {"chat.completions"}


def test_compatible_mode_errors_stay_openai_shaped(fake_server: ThreadServer) -> None:
    bad = openai.OpenAI(
        base_url=f"{fake_server.base_url}/compatible-mode/v1", api_key="sk-wrong", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.chat.completions.create(model=MODEL, messages=MSG)  # type: ignore[arg-type]
    assert exc.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    r = httpx.post(
        f"{fake_server.base_url}/compatible-mode/v1/chat/completions",
        json={"model": MODEL, "messages": MSG, "temperature": 5},
        headers={"Authorization": f"Bearer {key(fake_server)}"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "temperature"
