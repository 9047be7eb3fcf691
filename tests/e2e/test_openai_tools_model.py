"""Function calling, structured output and logprobs with the real packaged Qwen model behind a
real server, called with the official openai SDK. Generations are short and greedy."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.support import ProcessServer

pytestmark = [pytest.mark.model, pytest.mark.e2e]
MODEL = "qwen2.5-coder-0.5b-instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the local time in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PARIS = [{"role": "user", "content": "What's the weather like in Paris?"}]
GREETING = [{"role": "user", "content": "Hello! How are you today?"}]


def client(s: ProcessServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{s.base_url}/v1", api_key=s.api_key, max_retries=0)  # type: ignore[attr-defined]


def create(s: ProcessServer, **kw: Any) -> Any:
    return client(s).chat.completions.create(model=MODEL, temperature=0, **kw)


def only_call(r: Any) -> tuple[str, dict[str, Any]]:
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and len(call.id) == 29
    args = json.loads(call.function.arguments)
    assert isinstance(args, dict)
    return call.function.name, args


def test_auto_calls_the_weather_tool(model_server: ProcessServer) -> None:
    r = create(model_server, messages=PARIS, tools=[WEATHER], tool_choice="auto", max_tokens=60)
    name, args = only_call(r)
    assert name == "get_weather" and "paris" in args["city"].lower()


def test_auto_answers_in_text_when_no_tool_fits(model_server: ProcessServer) -> None:
    r = create(model_server, messages=GREETING, tools=[WEATHER], max_tokens=30)
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")


def test_required_forces_a_call_matching_the_schema(model_server: ProcessServer) -> None:
    r = create(
        model_server, messages=GREETING, tools=[WEATHER], tool_choice="required", max_tokens=60
    )
    name, args = only_call(r)
    assert name == "get_weather" and isinstance(args["city"], str)


def test_named_function_is_the_one_called(model_server: ProcessServer) -> None:
    r = create(
        model_server,
        messages=PARIS,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=60,
    )
    name, args = only_call(r)
    assert name == "get_time" and set(args) == {"city"}


def test_round_trip_with_a_tool_result(model_server: ProcessServer) -> None:
    first = create(
        model_server, messages=PARIS, tools=[WEATHER], tool_choice="required", max_tokens=60
    )
    call = first.choices[0].message.tool_calls[0]
    messages = [
        *PARIS,
        first.choices[0].message.model_dump(exclude_none=True),
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": json.dumps({"city": "Paris", "temperature_c": 21, "sky": "sunny"}),
        },
    ]
    r = create(model_server, messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=40)
    text = r.choices[0].message.content or ""
    assert r.choices[0].message.tool_calls is None
    assert "21" in text or "sunny" in text.lower(), text


def test_streamed_call_fragments_concatenate_to_the_arguments(model_server: ProcessServer) -> None:
    kw = {"messages": PARIS, "tools": [WEATHER], "tool_choice": "required", "max_tokens": 60}
    whole = only_call(create(model_server, **kw))
    chunks = list(create(model_server, stream=True, **kw))
    entries = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    first = entries[0]
    assert first.index == 0 and first.id.startswith("call_") and first.type == "function"
    assert first.function.name == "get_weather" and first.function.arguments == ""
    assert all(e.index == 0 and e.id is None for e in entries[1:]) and len(entries) > 2
    arguments = "".join(e.function.arguments for e in entries)
    assert json.loads(arguments) == whole[1]  # greedy: the same call both ways
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_json_object_output_parses(model_server: ProcessServer) -> None:
    r = create(
        model_server,
        messages=[{"role": "user", "content": "Describe a cat as JSON with a name and an age."}],
        response_format={"type": "json_object"},
        max_tokens=60,
    )
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_json_schema_output_validates(model_server: ProcessServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "indoor": {"type": "boolean"},
        },
        "required": ["name", "age", "indoor"],
        "additionalProperties": False,
    }
    for stream in (False, True):
        r = create(
            model_server,
            messages=[{"role": "user", "content": "Invent a cat."}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "cat", "schema": schema, "strict": True},
            },
            max_tokens=60,
            stream=stream,
        )
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in r if c.choices)
        else:
            text = r.choices[0].message.content
        cat = json.loads(text)
        assert set(cat) == {"name", "age", "indoor"}
        assert isinstance(cat["name"], str) and isinstance(cat["indoor"], bool)
        assert isinstance(cat["age"], int) and not isinstance(cat["age"], bool)


def test_schema_the_engine_cannot_enforce_is_a_400(model_server: ProcessServer) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "(?=a)[a-z]+"}},
    }  # a lookahead: no grammar enforces it (an unanchored pattern is fine: matched anywhere)
    r = httpx.post(
        f"{model_server.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {model_server.api_key}"},  # type: ignore[attr-defined]
        json={"model": MODEL, "messages": GREETING, "response_format": fmt},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    assert "'pattern' (at '/pattern')" in r.json()["error"]["message"]


def test_logprobs_shape_and_greedy_consistency(model_server: ProcessServer) -> None:
    r = create(
        model_server,
        messages=GREETING,
        max_tokens=5,
        logprobs=True,
        top_logprobs=3,
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 5
    assert b"".join(bytes(t.bytes) for t in content).decode() == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        tops = [a.logprob for a in t.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        assert t.top_logprobs[0].token == t.token  # greedy picks the most likely token
        assert t.logprob == pytest.approx(t.top_logprobs[0].logprob)
    chunks = list(create(model_server, messages=GREETING, max_tokens=5, logprobs=True, stream=True))
    streamed = [
        t.token
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content
    ]
    assert streamed == [t.token for t in content]
