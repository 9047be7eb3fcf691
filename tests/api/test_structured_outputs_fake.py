"""Structured outputs, documented ranges and cached tokens through HTTP in every protocol
(OpenAI, its DashScope compatible mode, DashScope's native API), over the scripted engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from modelgrid.core.types import InferenceRequest
from modelgrid.engines.base import PreparedRequest
from modelgrid.engines.fake import FakeEngine, prompt_words
from tests.conftest import ServerFactory
from tests.support import ThreadServer, db_execute, usage_rows

MODEL = "fake-model"
MSG = [{"role": "user", "content": "What is the capital of France?"}]  # 6 "tokens"
DS_PATH = "/api/v1/services/aigc/text-generation/generation"
MULTIPLE_OF = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}
BOUNDED = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}}}


def post(server: ThreadServer, path: str, body: object, sse: bool = False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.api_key}"}  # type: ignore[attr-defined]
    if sse:
        headers["X-DashScope-SSE"] = "enable"
    return httpx.post(f"{server.base_url}{path}", json=body, headers=headers, timeout=30)


def chat(server: ThreadServer, prefix: str = "", **body: Any) -> httpx.Response:
    return post(server, f"{prefix}/v1/chat/completions", {"model": MODEL, "messages": MSG, **body})


def dashscope(server: ThreadServer, sse: bool = False, **parameters: Any) -> httpx.Response:
    body = {"model": MODEL, "input": {"messages": MSG}, "parameters": parameters}
    return post(server, DS_PATH, body, sse=sse)


def tool(parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "count", "parameters": parameters}}


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


# -- documented ranges --


@pytest.mark.parametrize("prefix", ["", "/compatible-mode"])
def test_top_p_zero_is_accepted_as_the_reference_allows(
    fake_server: ThreadServer, prefix: str
) -> None:
    assert chat(fake_server, prefix, top_p=0).status_code == 200
    body = {"model": MODEL, "prompt": "Say hi", "top_p": 0, "max_tokens": 2}
    assert post(fake_server, f"{prefix}/v1/completions", body).status_code == 200
    r = chat(fake_server, prefix, top_p=1.5)
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_p"
    assert "1.5" in r.json()["error"]["message"]


def test_dashscope_top_p_is_open_at_zero_and_the_refusal_names_the_value(
    fake_server: ThreadServer,
) -> None:
    """DashScope's reference gives top_p as (0, 1.0]: 0 stays refused there."""
    r = dashscope(fake_server, top_p=0)
    assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"
    assert "'parameters.top_p'" in r.json()["message"] and "(got 0)" in r.json()["message"]
    assert dashscope(fake_server, top_p=1).status_code == 200


@pytest.mark.parametrize("prefix", ["", "/compatible-mode"])
def test_an_unknown_role_is_named_with_its_value(fake_server: ThreadServer, prefix: str) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]
    r = chat(fake_server, prefix, messages=messages)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "messages[1].role"
    assert "'robot'" in err["message"] and "'assistant'" in err["message"], err["message"]


def test_an_unknown_dashscope_role_is_named_with_its_value(fake_server: ThreadServer) -> None:
    body = {"model": MODEL, "input": {"messages": [{"role": "robot", "content": "beep"}]}}
    r = post(fake_server, DS_PATH, body)
    assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"
    assert "'input.messages[0].role'" in r.json()["message"]
    assert "'robot'" in r.json()["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", 2.5), ("presence_penalty", -3), ("frequency_penalty", 2.5), ("n", 129)],
)
def test_out_of_range_values_are_named(fake_server: ThreadServer, field: str, value: Any) -> None:
    r = chat(fake_server, **{field: value})
    assert r.status_code == 400 and r.json()["error"]["param"] == field
    assert f"(got {value})" in r.json()["error"]["message"]


def test_the_documented_maximum_n_is_accepted(fake_server: ThreadServer) -> None:
    r = chat(fake_server, n=128, max_tokens=1)
    assert r.status_code == 200 and len(r.json()["choices"]) == 128


# -- refused schema keywords --


@pytest.mark.parametrize("prefix", ["", "/compatible-mode"])
def test_a_keyword_the_grammar_cannot_enforce_is_a_400_naming_it(
    fake_server: ThreadServer, prefix: str
) -> None:
    for stream in (False, True):
        r = chat(fake_server, prefix, response_format=json_schema(MULTIPLE_OF), stream=stream)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert (err["param"], err["code"]) == ("response_format", "unsupported_parameter")
        assert "'multipleOf'" in err["message"] and "'/properties/n/multipleOf'" in err["message"]
    assert chat(fake_server, prefix, response_format=json_schema(BOUNDED)).status_code == 200


def test_forced_function_parameters_are_checked_and_shown_ones_are_not(
    fake_server: ThreadServer,
) -> None:
    tools = [tool(MULTIPLE_OF)]
    for choice in ("required", {"type": "function", "function": {"name": "count"}}):
        r = chat(fake_server, tools=tools, tool_choice=choice)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == "tools[0].function.parameters"
        assert "'multipleOf'" in err["message"]
    assert chat(fake_server, tools=tools, tool_choice="auto").status_code == 200


def test_dashscope_refuses_unenforceable_keywords_in_its_own_shape(
    fake_server: ThreadServer,
) -> None:
    for sse in (False, True):
        r = dashscope(fake_server, sse=sse, response_format=json_schema(MULTIPLE_OF))
        assert r.status_code == 400 and r.headers["content-type"] == "application/json"
        body = r.json()
        assert set(body) == {"request_id", "code", "message"}
        assert body["code"] == "InvalidParameter"
        assert "'multipleOf'" in body["message"] and "/properties/n/multipleOf" in body["message"]
        assert "'parameters.response_format'" in body["message"]
    choice = {"type": "function", "function": {"name": "count"}}
    r = dashscope(
        fake_server, tools=[tool(MULTIPLE_OF)], tool_choice=choice, result_format="message"
    )
    assert r.status_code == 400 and "'multipleOf'" in r.json()["message"]
    assert "parameters.tools[0].function.parameters" in r.json()["message"]
    ok = dashscope(fake_server, response_format=json_schema(BOUNDED))
    assert ok.status_code == 200, ok.text


# -- cached tokens, reported and priced --


class CachingFake(FakeEngine):
    """The scripted engine with a prefix cache as llama.cpp's: the words a prompt shares with
    the previous one are served from cache, all but the last (evaluated again for logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.last: list[str] = []

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        prepared = super().prepare(request)
        words = prompt_words(request)
        same = 0
        for a, b in zip(words, self.last, strict=False):
            if a != b:
                break
            same += 1
        prepared.cached_prompt_tokens = max(0, min(same, len(words) - 1))
        self.last = words
        return prepared


@pytest.fixture
def cached_server(server_factory: ServerFactory) -> ThreadServer:
    server = server_factory(CachingFake())
    db_execute(  # 10 micros an input token, 1 a cached one, 20 an output token
        server,
        "INSERT INTO prices (model, region, currency, input_micros_per_1m,"
        " cached_input_micros_per_1m, output_micros_per_1m, effective_from, created_at)"
        " VALUES ('fake-model', NULL, 'USD', 10000000, 1000000, 20000000, :at, :at)",
        at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    server.call(server.state.tenancy.reload_prices())
    return server


def _sse_usage(r: httpx.Response) -> dict[str, Any]:
    """The usage of the last data event that has one (OpenAI or DashScope stream)."""
    usages = [
        json.loads(line[5:]).get("usage")
        for line in r.text.splitlines()
        if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]")
    ]
    return [u for u in usages if u][-1]


def _twice(send: Any) -> dict[str, Any]:
    send()
    return send()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("protocol", "details", "prompt_key"),
    [
        ("chat", "prompt_tokens_details", "prompt_tokens"),
        ("chat-stream", "prompt_tokens_details", "prompt_tokens"),
        ("compatible-chat", "prompt_tokens_details", "prompt_tokens"),
        ("completions", "prompt_tokens_details", "prompt_tokens"),
        ("completions-stream", "prompt_tokens_details", "prompt_tokens"),
        ("dashscope", "prompt_tokens_details", "input_tokens"),
        ("dashscope-sse", "prompt_tokens_details", "input_tokens"),
    ],
)
def test_cached_tokens_are_reported_in_every_protocol_and_billed_at_the_cached_rate(
    cached_server: ThreadServer, protocol: str, details: str, prompt_key: str
) -> None:
    s = cached_server
    body = {"model": MODEL, "max_tokens": 4}
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    sends = {
        "chat": lambda: chat(s, max_tokens=4).json()["usage"],
        "chat-stream": lambda: _sse_usage(chat(s, max_tokens=4, **stream)),
        "compatible-chat": lambda: chat(s, "/compatible-mode", max_tokens=4).json()["usage"],
        "completions": lambda: post(
            s, "/v1/completions", {**body, "prompt": "What is the capital of France?"}
        ).json()["usage"],
        "completions-stream": lambda: _sse_usage(
            post(
                s, "/v1/completions", {**body, "prompt": "What is the capital of France?", **stream}
            )
        ),
        "dashscope": lambda: dashscope(s, max_tokens=4).json()["usage"],
        "dashscope-sse": lambda: _sse_usage(dashscope(s, sse=True, max_tokens=4)),
    }
    usage = _twice(sends[protocol])
    assert usage[prompt_key] == 6
    assert usage[details] == {"cached_tokens": 5}  # all but the prompt's last token
    rows = usage_rows(s, expect=2)
    first, second = rows[-2], rows[-1]
    assert (first["cached_tokens"], second["cached_tokens"]) == (0, 5)
    assert first["cost_micros"] == 6 * 10 + 4 * 20  # 140
    assert second["cost_micros"] == 1 * 10 + 5 * 1 + 4 * 20  # 95: the cached rate


def test_no_cache_hit_reports_no_details(cached_server: ThreadServer) -> None:
    usage = chat(cached_server, max_tokens=4).json()["usage"]
    assert "prompt_tokens_details" not in usage
    body = {"model": MODEL, "input": {"prompt": "Another question entirely"}}
    assert "prompt_tokens_details" not in post(cached_server, DS_PATH, body).json()["usage"]
