"""The real packaged Qwen model behind a real server, called with the official dashscope SDK
(only its base URL changed), and with the openai SDK through DashScope's compatible mode."""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import Any

import dashscope
import openai
import pytest

from tests.support import ProcessServer, db_rows

pytestmark = [pytest.mark.model, pytest.mark.e2e]
MODEL = "qwen2.5-coder-0.5b-instruct"
CAPITAL = [
    {"role": "user", "content": "What is the capital of France? Answer in one short sentence."}
]
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


@pytest.fixture
def ds(model_server: ProcessServer, monkeypatch: pytest.MonkeyPatch) -> ProcessServer:
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{model_server.base_url}/api/v1")
    return model_server


def key(s: ProcessServer) -> str:
    return s.api_key  # type: ignore[attr-defined,no-any-return]


def usage_row_of(s: ProcessServer, request_id: str, timeout_s: float = 10) -> dict[str, Any]:
    """The request's usage record, once it is written (the server's session outlives a test)."""
    deadline = time.monotonic() + timeout_s
    while True:
        query = "SELECT * FROM usage_records WHERE request_id = :rid"
        rows = db_rows(s.db_path, query, rid=request_id)  # type: ignore[attr-defined]
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1, rows
            return rows[0]
        time.sleep(0.05)


def test_generation_call_answers_and_is_metered(ds: ProcessServer) -> None:
    r = dashscope.Generation.call(
        model=MODEL,
        messages=CAPITAL,
        api_key=key(ds),
        result_format="message",
        max_tokens=30,
        temperature=0,
        enable_search=False,  # a DashScope switch modelgrid ignores
    )
    assert r.status_code == HTTPStatus.OK, r
    choice = r.output.choices[0]
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    assert r.usage.input_tokens > 10 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    row = usage_row_of(ds, r.request_id)  # waits for this request's record
    assert row["endpoint"] == "dashscope.generation"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        r.usage.input_tokens,
        r.usage.output_tokens,
    )


@pytest.mark.parametrize("incremental", [True, False])
def test_stream_matches_non_stream_when_greedy(ds: ProcessServer, incremental: bool) -> None:
    kw = {
        "model": MODEL,
        "messages": CAPITAL,
        "api_key": key(ds),
        "max_tokens": 20,
        "temperature": 0,
    }
    whole = dashscope.Generation.call(**kw)  # type: ignore[arg-type]
    events = list(dashscope.Generation.call(stream=True, incremental_output=incremental, **kw))  # type: ignore[arg-type]
    assert all(e.status_code == HTTPStatus.OK for e in events)
    texts = [e.output.text for e in events]
    streamed = "".join(texts) if incremental else texts[-1]
    assert streamed == whole.output.text
    assert [e.output.finish_reason for e in events[:-1]] == ["null"] * (len(events) - 1)
    assert events[-1].output.finish_reason in ("stop", "length")
    assert events[-1].usage.output_tokens == whole.usage.output_tokens


def test_forced_weather_tool_call_and_its_result(ds: ProcessServer) -> None:
    paris = [{"role": "user", "content": "What's the weather like in Paris?"}]
    kw = {"model": MODEL, "api_key": key(ds), "result_format": "message", "temperature": 0}
    r = dashscope.Generation.call(
        messages=paris,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60,
        **kw,  # type: ignore[arg-type]
    )
    assert r.status_code == HTTPStatus.OK, r
    choice = r.output.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content == ""
    (call,) = choice.message.tool_calls
    assert (call["type"], call["index"], call["function"]["name"]) == ("function", 0, "get_weather")
    assert call["id"].startswith("call_")
    assert "paris" in json.loads(call["function"]["arguments"])["city"].lower()
    assert usage_row_of(ds, r.request_id)["finish_reason"] == "tool_calls"
    # the function's result goes back as a tool message; the model answers in text
    result = {"role": "tool", "content": '{"sky": "sunny", "temperature_c": 24}'}
    answer = dashscope.Generation.call(
        messages=[*paris, dict(choice.message), {**result, "tool_call_id": call["id"]}],
        tools=[WEATHER],
        tool_choice="none",
        max_tokens=40,
        **kw,  # type: ignore[arg-type]
    )
    assert answer.status_code == HTTPStatus.OK, answer
    final = answer.output.choices[0]
    assert final.finish_reason in ("stop", "length") and final.message.content
    assert "tool_calls" not in final.message


def test_errors_in_dashscope_shape(ds: ProcessServer) -> None:
    bad = dashscope.Generation.call(model=MODEL, messages=CAPITAL, api_key="sk-wrong")
    assert (bad.status_code, bad.code) == (401, "InvalidApiKey")
    missing = dashscope.Generation.call(model="qwen-max", messages=CAPITAL, api_key=key(ds))
    assert (missing.status_code, missing.code) == (404, "ModelNotFound")


def test_compatible_mode_with_openai_sdk(model_server: ProcessServer) -> None:
    c = openai.OpenAI(
        base_url=f"{model_server.base_url}/compatible-mode/v1",
        api_key=key(model_server),
        max_retries=0,
    )
    r = c.chat.completions.create(model=MODEL, messages=CAPITAL, max_tokens=30, temperature=0)  # type: ignore[arg-type]
    assert "Paris" in (r.choices[0].message.content or "")


def test_text_embedding_call_with_the_packaged_embedding_model(ds: ProcessServer) -> None:
    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell today."]
    r = dashscope.TextEmbedding.call(model="all-minilm-l6-v2", input=texts, api_key=key(ds))
    assert r.status_code == HTTPStatus.OK, r
    vectors = [e["embedding"] for e in r.output["embeddings"]]
    assert [e["text_index"] for e in r.output["embeddings"]] == [0, 1, 2]
    assert all(len(v) == 384 for v in vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))  # vectors are L2-normalised

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.2
    assert r.usage["total_tokens"] > 3 * 3
    row = usage_row_of(ds, r.request_id)
    assert (row["endpoint"], row["prompt_tokens"]) == ("embeddings", r.usage["total_tokens"])


def test_top_k_1_is_greedy_whatever_the_seed(ds: ProcessServer) -> None:
    msgs = [{"role": "user", "content": "Name a colour."}]
    greedy = dashscope.Generation.call(
        model=MODEL, messages=msgs, api_key=key(ds), max_tokens=8, temperature=0
    )
    for seed in (1, 2):
        r = dashscope.Generation.call(
            model=MODEL,
            messages=msgs,
            api_key=key(ds),
            max_tokens=8,
            temperature=1.9,
            top_k=1,
            seed=seed,
        )
        assert r.output.text == greedy.output.text
