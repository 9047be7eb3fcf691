"""Structured outputs, top_p 0 and cached tokens on the real model (``modelgrid serve`` with
the packaged Qwen2.5-Coder-0.5B): what the grammar promises holds whatever the sampler draws,
and a prompt served from llama.cpp's prefix cache is reported and billed at the cached rate."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.support import ProcessServer, usage_rows

pytestmark = pytest.mark.model

MODEL = "qwen2.5-coder-0.5b-instruct"
SCHEMA = {
    "type": "object",
    "properties": {
        "digit": {"type": "integer", "minimum": 1, "maximum": 9},
        "color": {"enum": ["red", "green", "blue"]},
        "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["digit", "color", "code", "score"],
    "additionalProperties": False,
}


def client(s: ProcessServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{s.base_url}/v1", api_key=s.api_key, timeout=120)  # type: ignore[attr-defined]


def assert_valid(value: Any) -> None:
    """``value`` against ``SCHEMA``, keyword by keyword (no jsonschema dependency)."""
    assert isinstance(value, dict) and set(value) == {"digit", "color", "code", "score"}, value
    digit = value["digit"]
    assert isinstance(digit, int) and not isinstance(digit, bool) and 1 <= digit <= 9, value
    assert value["color"] in ("red", "green", "blue"), value
    assert isinstance(value["code"], str) and re.fullmatch(r"[A-Z]{2}-[0-9]{3}", value["code"])
    score = value["score"]
    assert isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 1


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_every_sampled_output_is_valid_against_the_schema(
    model_server: ProcessServer, seed: int
) -> None:
    """Sampled at temperature 1.5 and told to break the bounds (the reported bug answered
    1000000000000000 for an integer 1..9): the grammar still holds every keyword."""
    r = client(model_server).chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": "Give a product record as JSON. Use digit 1000000000000000, the "
                "colour purple, the code 'abc' and a score of 7.5.",
            }
        ],
        response_format={"type": "json_schema", "json_schema": {"name": "rec", "schema": SCHEMA}},
        temperature=1.5,
        seed=seed,
        max_tokens=120,
    )  # type: ignore[call-overload]
    choice = r.choices[0]
    assert choice.finish_reason == "stop", choice
    assert_valid(json.loads(choice.message.content or ""))


def test_forced_call_arguments_hold_their_bounds(model_server: ProcessServer) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "set_volume",
            "parameters": {
                "type": "object",
                "properties": {"level": {"type": "integer", "minimum": 1, "maximum": 9}},
                "required": ["level"],
                "additionalProperties": False,
            },
        },
    }
    for seed in (1, 2):
        r = client(model_server).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Set the volume to 250."}],
            tools=[tool],
            tool_choice={"type": "function", "function": {"name": "set_volume"}},
            temperature=1.5,
            seed=seed,
            max_tokens=60,
        )  # type: ignore[call-overload]
        (call,) = r.choices[0].message.tool_calls or []
        level = json.loads(call.function.arguments)["level"]
        assert isinstance(level, int) and 1 <= level <= 9


def test_an_unenforceable_keyword_is_refused_before_any_generation(
    model_server: ProcessServer,
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}
    with pytest.raises(openai.BadRequestError) as exc:
        client(model_server).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )  # type: ignore[call-overload]
    assert "multipleOf" in str(exc.value) and "/properties/n/multipleOf" in str(exc.value)


def test_top_p_zero_writes_the_most_likely_tokens(model_server: ProcessServer) -> None:
    msgs = [{"role": "user", "content": "Name three prime numbers."}]
    c = client(model_server)
    greedy = c.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=16)  # type: ignore[arg-type]
    for seed in (5, 6):
        r = c.chat.completions.create(
            model=MODEL, messages=msgs, top_p=0, temperature=1.5, seed=seed, max_tokens=16
        )  # type: ignore[arg-type]
        assert r.choices[0].message.content == greedy.choices[0].message.content


def _rows_for(server: ProcessServer, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        rows = {
            r["request_id"]: r
            for r in usage_rows(server.db_path, expect=len(request_ids))  # type: ignore[attr-defined]
            if r["request_id"] in request_ids
        }
        if len(rows) == len(request_ids) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_a_repeated_prompt_is_served_from_cache_and_billed_at_the_cached_rate(
    model_server: ProcessServer,
) -> None:
    admin = httpx.post(
        f"{model_server.base_url}/admin/v1/prices",
        headers={"Authorization": f"Bearer {model_server.admin_key}"},  # type: ignore[attr-defined]
        json={
            "model": MODEL,
            "input_micros_per_1m": 10_000_000,  # 10 micros a token
            "cached_input_micros_per_1m": 1_000_000,  # 1 micro a cached token
            "output_micros_per_1m": 20_000_000,
        },
        timeout=10,
    )
    assert admin.status_code == 200, admin.text
    time.sleep(0.05)  # a request's time is after the price's
    msgs = [
        {"role": "system", "content": f"Session {uuid.uuid4()}. " + "Answer briefly. " * 30},
        {"role": "user", "content": "Sky colour?"},
    ]
    ids, usages = [], []
    for _ in range(2):
        r = client(model_server).chat.completions.with_raw_response.create(
            model=MODEL, messages=msgs, max_tokens=3, temperature=0
        )  # type: ignore[arg-type]
        ids.append(r.headers["x-request-id"])
        usages.append(r.parse().usage)
    first, second = usages
    cached = second.prompt_tokens_details.cached_tokens  # type: ignore[union-attr]
    assert cached == second.prompt_tokens - 1  # all but the prompt's last token
    assert (
        first.prompt_tokens_details is None
        or (
            first.prompt_tokens_details.cached_tokens or 0  # the template's opening may be cached
        )
        < cached
    )
    rows = _rows_for(model_server, ids)
    for rid, usage in zip(ids, usages, strict=True):
        row = rows[rid]
        hit = row["cached_tokens"]
        expected = (row["prompt_tokens"] - hit) * 10 + hit * 1 + row["completion_tokens"] * 20
        assert row["cost_micros"] == expected, row
        assert row["prompt_tokens"] == usage.prompt_tokens
    assert rows[ids[1]]["cached_tokens"] == cached
    assert rows[ids[1]]["cost_micros"] < rows[ids[0]]["cost_micros"]


def test_dashscope_native_usage_reports_cached_tokens(model_server: ProcessServer) -> None:
    body = {
        "model": MODEL,
        "input": {"messages": [{"role": "user", "content": f"{uuid.uuid4()} " + "Hello. " * 20}]},
        "parameters": {"max_tokens": 2},
    }
    headers = {"Authorization": f"Bearer {model_server.api_key}"}  # type: ignore[attr-defined]
    url = f"{model_server.base_url}/api/v1/services/aigc/text-generation/generation"
    httpx.post(url, json=body, headers=headers, timeout=60).raise_for_status()
    usage = httpx.post(url, json=body, headers=headers, timeout=60).json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["input_tokens"] - 1
