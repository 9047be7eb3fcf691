"""OpenAI text completions over a real uvicorn server, the scripted FakeEngine and the SDK."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import openai
import pytest

from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.fake_embedding import FakeEmbeddingEngine
from tests.conftest import ServerFactory
from tests.support import ThreadServer, usage_rows

MODEL = "fake-model"
PROMPT = "The capital of France is"  # 5 "tokens"
REPLY = "Paris is the capital of France."  # 6 "tokens"


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def server(server_factory: ServerFactory, engine: FakeEngine) -> ThreadServer:
    return server_factory(engine, FakeEmbeddingEngine())


def client(s: ThreadServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{s.base_url}/v1", api_key=s.api_key, max_retries=0)  # type: ignore[attr-defined]


def post(s: ThreadServer, body: object, path: str = "/v1/completions") -> httpx.Response:
    return httpx.post(
        f"{s.base_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {s.api_key}"},  # type: ignore[attr-defined]
    )


def test_string_prompt_text_usage_and_record(server: ThreadServer, tmp_path: Path) -> None:
    r = client(server).completions.create(model=MODEL, prompt=PROMPT)
    assert r.object == "text_completion" and re.fullmatch(r"cmpl-[0-9a-f]{24}", r.id)
    assert r.model == MODEL
    [choice] = r.choices
    assert (choice.index, choice.text, choice.finish_reason) == (0, REPLY, "stop")
    assert choice.logprobs is None
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 6, 11)
    [row] = usage_rows(tmp_path / "mg.db", expect=1)
    assert (row["endpoint"], row["model"], row["status"], row["finish_reason"]) == (
        "completions",
        MODEL,
        200,
        "stop",
    )
    assert (row["prompt_tokens"], row["completion_tokens"]) == (5, 6)


@pytest.mark.parametrize("engine", [FakeEngine(reply=" ".join(["w"] * 40))])
def test_max_tokens_defaults_to_16(server: ThreadServer) -> None:
    r = client(server).completions.create(model=MODEL, prompt=PROMPT)
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 16
    r = client(server).completions.create(model=MODEL, prompt=PROMPT, max_tokens=20)
    assert r.usage is not None and r.usage.completion_tokens == 20


def test_list_of_prompts_with_n_numbers_choices_and_records_once(
    server: ThreadServer, tmp_path: Path
) -> None:
    prompts = ["one two", "three four five"]
    r = client(server).completions.create(model=MODEL, prompt=prompts, n=2, max_tokens=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert [c.text for c in r.choices] == ["Paris is"] * 4
    assert {c.finish_reason for c in r.choices} == {"length"}
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (2 + 3, 4 * 2)
    rows = usage_rows(tmp_path / "mg.db", expect=1)
    assert len(rows) == 1  # one request, one record, whatever the number of prompts
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"], rows[0]["status"]) == (
        5,
        8,
        200,
    )
    assert rows[0]["finish_reason"] == "length"


def test_echo_stop_and_sampling_parameters(server: ThreadServer) -> None:
    c = client(server)
    r = c.completions.create(model=MODEL, prompt=PROMPT, echo=True, max_tokens=2)
    assert r.choices[0].text == PROMPT + "Paris is"
    r = c.completions.create(
        model=MODEL,
        prompt=[PROMPT, "x"],
        stop=["capital"],
        temperature=0,
        top_p=0.5,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        user="u1",
    )
    assert [ch.text for ch in r.choices] == ["Paris is the ", "Paris is the "]
    assert [ch.finish_reason for ch in r.choices] == ["stop", "stop"]


def _normalise(body: bytes) -> str:
    text = body.decode()
    text = re.sub(r'"id":"cmpl-[0-9a-f]{24}"', '"id":"ID"', text)
    return re.sub(r'"created":\d+', '"created":0', text)


def test_stream_wire_bytes_golden(server: ThreadServer) -> None:
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "stream": True,
        "max_tokens": 3,
        "echo": True,
        "stream_options": {"include_usage": True},
    }
    r = post(server, body)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    head = '"id":"ID","object":"text_completion","created":0,"model":"fake-model","system_fingerprint":null'

    def chunk(text: str, finish: str = "null") -> str:
        return (
            f'data: {{{head},"choices":[{{"text":"{text}","index":0,"logprobs":null,'
            f'"finish_reason":{finish}}}],"usage":null}}\n\n'
        )

    expected = (
        chunk(PROMPT)
        + chunk("Paris")
        + chunk(" is")
        + chunk(" the")
        + chunk("", '"length"')
        + f'data: {{{head},"choices":[],"usage":{{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}}}\n\n'
        + "data: [DONE]\n\n"
    )
    assert _normalise(r.content) == expected


def test_stream_with_sdk_list_prompts_and_stop(server: ThreadServer) -> None:
    stream = client(server).completions.create(
        model=MODEL, prompt=["a", "b c"], stream=True, stop="capital of"
    )
    chunks = list(stream)
    texts: dict[int, str] = {}
    finish: dict[int, str | None] = {}
    for ch in chunks:
        assert ch.object == "text_completion" and ch.usage is None
        for choice in ch.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert texts == {0: "Paris is the ", 1: "Paris is the "}
    assert finish == {0: "stop", 1: "stop"}
    assert len({ch.id for ch in chunks}) == 1


def test_compatible_mode_mount(server: ThreadServer) -> None:
    r = post(server, {"model": MODEL, "prompt": PROMPT}, path="/compatible-mode/v1/completions")
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == REPLY


@pytest.mark.parametrize(
    ("extra", "status", "param", "code"),
    [
        ({"suffix": "end"}, 400, "suffix", "unsupported_parameter"),
        ({"logprobs": 2}, 400, "logprobs", "unsupported_parameter"),
        ({"logprobs": 0}, 400, "logprobs", "unsupported_parameter"),
        ({"logit_bias": {"1": 5}}, 400, "logit_bias", "unsupported_parameter"),
        ({"best_of": 3}, 400, "best_of", "unsupported_parameter"),
        ({"prompt": [1, 2, 3]}, 400, "prompt", "unsupported_parameter"),
        ({"prompt": [[1, 2], [3]]}, 400, "prompt", "unsupported_parameter"),
        ({"prompt": []}, 400, "prompt", "invalid_request"),
        ({"prompt": ""}, 400, "prompt", "invalid_request"),
        ({"prompt": ["ok", ""]}, 400, "prompt[1]", "invalid_request"),
        ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "invalid_request"),
        ({"stop": [""]}, 400, "stop", "invalid_request"),
        ({"max_tokens": 0}, 400, "max_tokens", "invalid_request"),
        ({"temperature": 3}, 400, "temperature", "invalid_request"),
        ({"n": 0}, 400, "n", "invalid_request"),
        ({"prompt": ["p"] * 9, "n": 16}, 400, "n", "invalid_request"),
        ({"prompt": "word " * 60}, 400, "prompt", "context_length_exceeded"),
        ({"model": "nope"}, 404, "model", "model_not_found"),
        ({"model": "fake-embedding"}, 400, "model", "model_not_supported"),
    ],
)
def test_rejected_before_any_byte(
    server: ThreadServer, extra: dict[str, object], status: int, param: str, code: str
) -> None:
    for stream in (False, True):
        r = post(server, {"model": MODEL, "prompt": PROMPT, "stream": stream, **extra})
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        err = r.json()["error"]
        assert (err["param"], err["code"]) == (param, code), err
        assert err["message"]


def test_missing_prompt_is_a_400(server: ThreadServer) -> None:
    r = post(server, {"model": MODEL})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "prompt"


def test_best_of_equal_to_n_is_accepted(server: ThreadServer) -> None:
    r = post(server, {"model": MODEL, "prompt": PROMPT, "n": 2, "best_of": 2, "max_tokens": 1})
    assert r.status_code == 200 and len(r.json()["choices"]) == 2


@pytest.mark.parametrize("engine", [FakeEngine(fail_after_tokens=2)])
def test_mid_stream_failure_ends_with_error_event(server: ThreadServer, tmp_path: Path) -> None:
    r = post(server, {"model": MODEL, "prompt": PROMPT, "stream": True})
    assert r.status_code == 200
    events = [e for e in r.text.split("\n\n") if e]
    assert "[DONE]" not in r.text
    last = json.loads(events[-1].removeprefix("data: "))
    assert last["error"]["type"] == "server_error" and last["error"]["code"] == "engine_error"
    [row] = usage_rows(tmp_path / "mg.db", expect=1)
    assert (row["status"], row["finish_reason"], row["completion_tokens"]) == (500, "error", 2)


@pytest.mark.parametrize(
    "engine", [FakeEngine(reply=" ".join(["w"] * 40), token_delay_s=0.05, context_length=200)]
)
def test_client_disconnect_records_tokens_so_far_once(
    server: ThreadServer, engine: FakeEngine, tmp_path: Path
) -> None:
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/completions",
        headers={"Authorization": f"Bearer {server.api_key}", "x-request-id": "gone"},  # type: ignore[attr-defined]
        json={"model": MODEL, "prompt": ["a", "b"], "stream": True, "max_tokens": 40},
    ) as r:
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: {"):
                seen += 1
            if seen == 3:
                break
    rows = usage_rows(tmp_path / "mg.db", expect=1)
    assert len(rows) == 1
    assert rows[0]["client_request_id"] == "gone"
    assert (rows[0]["status"], rows[0]["finish_reason"]) == (499, "cancelled")
    assert 3 <= int(rows[0]["completion_tokens"]) < 40  # type: ignore[call-overload]
    assert rows[0]["prompt_tokens"] == 1  # the second prompt never ran
    assert engine.cancelled == 1


def test_stream_options_need_a_stream(server: ThreadServer) -> None:
    r = post(server, {"model": MODEL, "prompt": PROMPT, "stream_options": {"include_usage": True}})
    assert r.status_code == 400, r.text
    assert (r.json()["error"]["param"], r.json()["error"]["message"]) == (
        "stream_options",
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
    )
