"""Anthropic's Messages API with the real packaged Qwen model behind a real ``modelgrid
serve`` (its engine process), called with the official ``anthropic`` SDK. Generations are
short and greedy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.support import ProcessServer

pytestmark = [pytest.mark.model, pytest.mark.e2e]
MODEL = "qwen2.5-coder-0.5b-instruct"
WEATHER: Any = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
    },
}
PARIS: Any = [{"role": "user", "content": "What's the weather like in Paris?"}]
GREEDY = {"temperature": 0}  # the SDK (2.x) has no sampling arguments any more
CAPITAL: Any = [{"role": "user", "content": "What is the capital of France? One word."}]


@pytest.fixture
def sdk(model_server: ProcessServer) -> Iterator[anthropic.Anthropic]:
    c = anthropic.Anthropic(
        base_url=model_server.base_url,
        api_key=model_server.api_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=120,
    )
    yield c
    c.close()


def test_create(sdk: anthropic.Anthropic) -> None:
    m = sdk.messages.create(
        model=MODEL, max_tokens=16, extra_body=GREEDY, system="Be brief.", messages=CAPITAL
    )
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert "paris" in m.content[0].text.lower()  # type: ignore[union-attr]
    assert m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) > 20
    assert 0 < m.usage.output_tokens <= 16


def test_stream_and_message_start_counts(
    sdk: anthropic.Anthropic, model_server: ProcessServer
) -> None:
    with sdk.messages.stream(model=MODEL, max_tokens=16, extra_body=GREEDY, messages=CAPITAL) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert "paris" in text.lower()
    assert final.content[0].text == text  # type: ignore[union-attr]
    prompt = final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0)
    r = httpx.post(
        f"{model_server.base_url}/v1/messages",
        json={
            "model": MODEL,
            "max_tokens": 4,
            "temperature": 0,
            "messages": CAPITAL,
            "stream": True,
        },
        headers={"x-api-key": model_server.api_key},  # type: ignore[attr-defined]
        timeout=120,
    )
    start = r.text.split("\n\n")[0]
    assert start.startswith("event: message_start\n")
    # the real prompt count before the first token (the prefix-cache split comes at the end)
    assert f'"input_tokens":{prompt},' in start


def test_stop_sequence(sdk: anthropic.Anthropic) -> None:
    m = sdk.messages.create(
        model=MODEL,
        max_tokens=40,
        extra_body=GREEDY,
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        stop_sequences=["5"],
    )
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", "5")
    assert "5" not in m.content[0].text  # type: ignore[union-attr]


def test_forced_tool_use_round_trip(sdk: anthropic.Anthropic) -> None:
    first = sdk.messages.create(
        model=MODEL,
        max_tokens=60,
        extra_body=GREEDY,
        messages=PARIS,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert first.stop_reason == "tool_use"
    (call,) = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    assert "paris" in call.input["city"].lower()  # type: ignore[index]
    follow_up = [
        *PARIS,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 24 °C."}
            ],
        },
    ]
    counted = sdk.messages.count_tokens(model=MODEL, messages=follow_up, tools=[WEATHER])
    second = sdk.messages.create(
        model=MODEL, max_tokens=40, extra_body=GREEDY, messages=follow_up, tools=[WEATHER]
    )
    assert second.stop_reason in ("end_turn", "max_tokens", "tool_use")
    total = second.usage.input_tokens + (second.usage.cache_read_input_tokens or 0)
    assert counted.input_tokens == total
    assert (second.usage.cache_read_input_tokens or 0) > 0  # the first turn's prefix, cached


def test_count_tokens_equals_the_next_creates_input(sdk: anthropic.Anthropic) -> None:
    kw: Any = {"model": MODEL, "messages": PARIS, "system": "Be brief.", "tools": [WEATHER]}
    counted = sdk.messages.count_tokens(**kw)
    m = sdk.messages.create(max_tokens=8, extra_body=GREEDY, **kw)
    assert counted.input_tokens == m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)
    assert counted.input_tokens > 100  # Qwen's tool preamble is in the prompt


def test_tokenize_is_what_a_chat_call_is_fed(model_server: ProcessServer) -> None:
    """vLLM's /tokenize on the real tokenizer and chat template (the engine process's own
    route): its count is a chat call's prompt usage, and /detokenize gives the templated
    prompt back."""
    headers = {"Authorization": f"Bearer {model_server.api_key}"}  # type: ignore[attr-defined]
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]},
        }
    ]
    body = {"model": MODEL, "messages": PARIS, "tools": tools}

    def post(path: str, payload: dict[str, Any]) -> Any:
        r = httpx.post(f"{model_server.base_url}{path}", json=payload, headers=headers, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()

    counted = post("/tokenize", body)
    chat = post("/v1/chat/completions", {**body, "max_tokens": 1, "temperature": 0})
    assert counted["count"] == chat["usage"]["prompt_tokens"] == len(counted["tokens"])
    assert counted["max_model_len"] == 2048
    text = post("/detokenize", {"model": MODEL, "tokens": counted["tokens"]})["prompt"]
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    assert "get_weather" in text and "What's the weather like in Paris?" in text
    bare = post("/tokenize", {**body, "add_generation_prompt": False})
    assert bare["tokens"] == counted["tokens"][: bare["count"]] and bare["count"] < counted["count"]
    prompt = post("/tokenize", {"model": MODEL, "prompt": "Hello world"})
    assert (
        post("/detokenize", {"model": MODEL, "tokens": prompt["tokens"]})["prompt"] == "Hello world"
    )


def test_a_prefill_is_continued_not_answered_anew(
    sdk: anthropic.Anthropic, model_server: ProcessServer
) -> None:
    prefill: Any = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is"},
    ]
    m = sdk.messages.create(model=MODEL, max_tokens=8, extra_body=GREEDY, messages=prefill)
    text = m.content[0].text  # type: ignore[union-attr]
    assert text.lstrip().lower().startswith("paris"), text  # the sentence goes on
    assert not text.lower().startswith("the capital")  # the prefill is not repeated
    # The prompt ends inside the assistant's turn (vLLM's continue_final_message, through the
    # gateway to the engine process), and its count is the call's input.
    headers = {"Authorization": f"Bearer {model_server.api_key}"}  # type: ignore[attr-defined]
    body = {"model": MODEL, "messages": prefill, "continue_final_message": True}
    url = model_server.base_url
    counted = httpx.post(f"{url}/tokenize", json=body, headers=headers, timeout=60).json()
    assert counted["count"] == m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)
    tokens = {"model": MODEL, "tokens": counted["tokens"]}
    shown = httpx.post(f"{url}/detokenize", json=tokens, headers=headers, timeout=60).json()
    assert shown["prompt"].endswith(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\nThe capital of France is"
    )
