"""The client side of the OpenAI wire (``engines.openai_wire``): SSE decoding, request bodies,
stream parsing."""

from __future__ import annotations

import json

import pytest

from modelgrid.core.errors import UpstreamError
from modelgrid.core.types import (
    ChatMessage,
    FinishReason,
    InferenceRequest,
    ResponseFormat,
    ResponseFormatKind,
    SamplingParams,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
)
from modelgrid.engines import openai_wire as wire


def test_sse_events_split_across_reads_and_crlf() -> None:
    stream = b'data: {"a":1}\r\n\r\n: comment\n\ndata: {"b"' + b":2}\n\nevent: x\ndata: [DONE]\n\n"
    dec = wire.SSEDecoder()
    out: list[bytes] = []
    for i in range(len(stream)):  # one byte at a time: the worst split possible
        out += dec.feed(stream[i : i + 1])
    assert out == [b'{"a":1}', b'{"b":2}', b"[DONE]"]
    assert dec.close() == []


def test_sse_multiline_data_and_missing_final_blank_line() -> None:
    dec = wire.SSEDecoder()
    assert dec.feed(b"data: line1\ndata:line2\n\ndata: tail") == [b"line1\nline2"]
    assert dec.close() == [b"tail"]


def test_request_body_carries_tools_format_and_logprobs() -> None:
    req = InferenceRequest(
        request_id="r",
        model="gw",
        messages=[
            ChatMessage("user", "weather?"),
            ChatMessage("assistant", None, tool_calls=(ToolCall("c1", "get", '{"q":1}'),)),
            ChatMessage("tool", "sunny", tool_call_id="c1"),
        ],
        sampling=SamplingParams(
            top_p=0.5,
            logprobs=True,
            top_logprobs=2,
            response_format=ResponseFormat(ResponseFormatKind.JSON_SCHEMA, {"type": "object"}, "x"),
        ),
        tools=(Tool("get", "Get it", {"type": "object"}),),
        tool_choice=ToolChoice(ToolChoiceMode.FUNCTION, "get"),
        parallel_tool_calls=False,
    )
    body = wire.request_body(req, "up")
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get", "arguments": '{"q":1}'}}
        ],
    }
    assert body["messages"][2] == {"role": "tool", "content": "sunny", "tool_call_id": "c1"}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get", "description": "Get it", "parameters": {"type": "object"}},
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get"}}
    assert body["parallel_tool_calls"] is False
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object"}},
    }
    assert (body["logprobs"], body["top_logprobs"], body["top_p"]) == (True, 2, 0.5)
    assert "temperature" not in body and "n" not in body
    assert wire.request_path(req) == "chat/completions"


def test_raw_prompt_goes_to_completions() -> None:
    req = InferenceRequest(request_id="r", model="gw", prompt="Once upon")
    body = wire.request_body(req, "up")
    assert body["prompt"] == "Once upon" and "messages" not in body
    assert wire.request_path(req) == "completions"


def _parser(req: InferenceRequest) -> wire.StreamParser:
    return wire.StreamParser(req, lambda message, code: UpstreamError(message, code=code))


def test_parser_reads_tool_call_parts_and_logprobs() -> None:
    req = InferenceRequest(
        request_id="r",
        model="gw",
        messages=[ChatMessage("user", "hi")],
        sampling=SamplingParams(logprobs=True, top_logprobs=1),
    )
    p = _parser(req)
    first = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get", "arguments": ""},
                        }
                    ]
                },
                "logprobs": {
                    "content": [
                        {
                            "token": "a",
                            "logprob": -0.1,
                            "bytes": [97],
                            "top_logprobs": [{"token": "a", "logprob": -0.1, "bytes": [97]}],
                        }
                    ]
                },
                "finish_reason": None,
            }
        ]
    }
    [delta] = p.event(json.dumps(first).encode()) or []
    assert delta.tool_calls == (ToolCallDelta(0, "call_1", "get", ""),)
    assert delta.logprobs[0].token_bytes == b"a" and delta.logprobs[0].top[0].logprob == -0.1
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    assert p.event(json.dumps(last).encode()) == []
    assert p.finished == {0: FinishReason.TOOL_CALLS}
    assert p.event(b"[DONE]") is None


def test_parser_errors() -> None:
    p = _parser(InferenceRequest(request_id="r", model="gw", messages=[ChatMessage("user", "x")]))
    with pytest.raises(UpstreamError):
        p.event(b"{not json")
    with pytest.raises(UpstreamError) as info:
        p.event(b'{"error": {"message": "overloaded", "code": "busy"}}')
    assert info.value.code == "busy"


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"error": {"message": "m", "code": "c", "param": "p"}}, ("m", "c", "p")),
        ({"object": "error", "message": "m", "code": 400}, ("m", None, None)),
        ({"detail": "m"}, ("m", None, None)),
        ({"error": "m"}, ("m", None, None)),
        ("plain text", ("plain text", None, None)),
    ],
)
def test_error_fields_from_any_server(obj: object, expected: tuple[str, object, object]) -> None:
    assert wire.error_fields(obj) == expected


def test_a_continued_final_message_is_sent_as_vllm_asks() -> None:
    req = InferenceRequest(
        request_id="r",
        model="gw",
        messages=[ChatMessage("user", "Count to 5."), ChatMessage("assistant", "1, 2,")],
        continue_final_message=True,
    )
    body = wire.request_body(req, "up")
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["messages"][-1] == {"role": "assistant", "content": "1, 2,"}
    plain = wire.request_body(InferenceRequest(request_id="r", model="gw", messages=[]), "up")
    assert "continue_final_message" not in plain and "add_generation_prompt" not in plain
