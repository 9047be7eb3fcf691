"""The Responses API with the real packaged Qwen model behind a real server, through the
official openai SDK: create, stream, and a chain with a function call round trip that
outlives a server restart. Generations are short and greedy."""

from __future__ import annotations

import json

import openai
import pytest

from tests.support import ProcessServer, db_rows

pytestmark = [pytest.mark.model, pytest.mark.e2e]
MODEL = "qwen2.5-coder-0.5b-instruct"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
    },
}


def _client(server: ProcessServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.base_url}/v1",
        api_key=server.api_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=120,
    )


def test_create_and_stream_give_the_same_answer(model_server: ProcessServer) -> None:
    c = _client(model_server)
    ask = {
        "model": MODEL,
        "input": "What is the capital of France? Answer with one word.",
        "temperature": 0,
        "max_output_tokens": 8,
    }
    made = c.responses.create(**ask)  # type: ignore[call-overload]
    assert "Paris" in made.output_text
    with c.responses.stream(**ask) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == made.output_text
    assert final.usage is not None and made.usage is not None
    assert final.usage.input_tokens == made.usage.input_tokens > 10
    assert c.responses.retrieve(final.id).output_text == final.output_text


def test_a_chained_function_call_round_trip_survives_a_restart(
    model_server: ProcessServer,
) -> None:
    c = _client(model_server)
    first = c.responses.create(
        model=MODEL,
        input="What is the weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
    )
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments)["city"].lower().startswith("paris")
    second = c.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}],
        tools=[WEATHER],  # type: ignore[list-item]  # the same tools: the same prompt prefix
        temperature=0,
        max_output_tokens=40,
    )
    assert second.status in ("completed", "incomplete") and second.output
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens
    # The same replica served the first turn: its prefix cache held that prompt.
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens // 2

    model_server.stop()
    model_server.start()
    c = _client(model_server)
    third = c.responses.create(
        model=MODEL,
        previous_response_id=second.id,
        input="Thanks! Which city was that about? One word.",
        temperature=0,
        max_output_tokens=8,
    )
    assert "Paris" in third.output_text
    items = c.responses.input_items.list(third.id, order="asc").data
    kinds = [i.type for i in items]
    assert kinds[:3] == ["message", "function_call", "function_call_output"]
    assert [i.id for i in items[1:2]] == [o.id for o in first.output]
    assert [i.id for i in items[3:-1]] == [o.id for o in second.output]
    assert kinds[-1] == "message" and items[-1].role == "user"  # type: ignore[union-attr]
    ids = {first.id, second.id, third.id}
    stored = db_rows(
        model_server.db_path,  # type: ignore[attr-defined]
        "SELECT id FROM responses",
    )
    assert ids <= {r["id"] for r in stored}
