"""DashScope function calling, wire <-> core (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.types import ChatMessage, ToolCall, ToolCallDelta, ToolChoice, ToolChoiceMode
from modelgrid.protocol.dashscope.convert import to_inference_request
from modelgrid.protocol.dashscope.models import GenerationRequest
from modelgrid.protocol.dashscope.tools import call_steps, tool_call_step_entry

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
TIME = {"type": "function", "function": {"name": "get_time"}}


def convert(messages: list[dict[str, Any]], **parameters: Any) -> Any:
    body = {"model": "m", "input": {"messages": messages}, "parameters": parameters}
    return to_inference_request(GenerationRequest.model_validate(body), "rid")


def call_entry(call_id: str | None, name: str, arguments: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "function",
        "function": {"name": name, "arguments": arguments},
        "index": 0,
    }
    if call_id is not None:
        entry["id"] = call_id
    return entry


def test_tools_and_choice_become_core_types() -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    req = convert(
        [{"role": "user", "content": "hi"}],
        result_format="message",
        tools=[WEATHER, TIME],
        tool_choice=named,
    )
    assert [t.name for t in req.tools] == ["get_weather", "get_time"]
    assert req.tool_choice == ToolChoice(ToolChoiceMode.FUNCTION, "get_time")
    assert req.parallel_tool_calls is False  # DashScope's default
    hi = [{"role": "user", "content": "hi"}]
    parallel = convert(hi, result_format="message", tools=[WEATHER], parallel_tool_calls=True)
    assert parallel.parallel_tool_calls is True
    plain = convert(hi, result_format="message", tools=[WEATHER])
    assert plain.tool_choice is None and plain.tool_mode is ToolChoiceMode.AUTO


def test_tool_errors_point_under_parameters() -> None:
    with pytest.raises(InvalidRequestError) as exc:
        convert([{"role": "user", "content": "x"}], result_format="message", tool_choice="auto")
    assert exc.value.param == "parameters.tool_choice"
    with pytest.raises(InvalidRequestError) as exc:
        convert([{"role": "user", "content": "x"}], result_format="message", tools=[WEATHER] * 2)
    assert exc.value.param == "parameters.tools[1].function.name"
    with pytest.raises(InvalidRequestError) as exc:
        convert([{"role": "user", "content": "x"}], tools=[WEATHER])
    assert exc.value.param == "parameters.result_format"


def test_assistant_calls_and_tool_results_convert_to_core_messages() -> None:
    req = convert(
        [
            {"role": "user", "content": "Weather and time in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    call_entry("call_a", "get_weather", '{"city": "Paris"}'),
                    {**call_entry("call_b", "get_time", "{}"), "index": 1},
                ],
            },
            {"role": "tool", "content": "12:00", "name": "get_time"},  # tied by name
            {"role": "tool", "content": "sunny"},  # the one left
            {"role": "assistant", "content": "Sunny, noon."},
        ]
    )
    assistant = req.messages[1]
    assert assistant.tool_calls == (
        ToolCall("call_a", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_b", "get_time", "{}"),
    )
    assert req.messages[2:4] == [
        ChatMessage("tool", "12:00", "get_time", (), "call_b"),
        ChatMessage("tool", "sunny", None, (), "call_a"),
    ]
    assert req.messages[4].tool_calls == ()


def test_calls_without_ids_get_ids_their_results_are_tied_to() -> None:
    req = convert(
        [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [call_entry(None, "get_weather", "{}")]},
            {"role": "tool", "content": "sunny", "name": "get_weather"},
            {"role": "tool", "content": "extra", "tool_call_id": "elsewhere"},
        ]
    )
    (tool_call,) = req.messages[1].tool_calls
    assert tool_call.id == "call_1_0"
    assert [m.tool_call_id for m in req.messages[2:]] == ["call_1_0", "elsewhere"]


def test_call_steps_and_incremental_entries() -> None:
    steps = call_steps(ToolCallDelta(1, "call_x", "f", '{"a": 1}'))
    assert steps == [
        ToolCallDelta(1, "call_x", "f"),
        ToolCallDelta(1, arguments='{"a": '),
        ToolCallDelta(1, arguments="1}"),
    ]
    assert [tool_call_step_entry(s) for s in steps] == [
        {
            "index": 1,
            "id": "call_x",
            "type": "function",
            "function": {"name": "f", "arguments": ""},
        },
        {"index": 1, "id": "", "type": "function", "function": {"arguments": '{"a": '}},
        {"index": 1, "id": "", "type": "function", "function": {"arguments": "1}"}},
    ]
    assert call_steps(ToolCallDelta(0, arguments="")) == []
