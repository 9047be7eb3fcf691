"""Messages and tokenization through an upstream replica: the gateway in front of a real
``modelgrid engine`` worker app (over the scripted engine), and of a scripted upstream that
has no ``/tokenize``. Checks what has to cross the OpenAI wire: the exact prompt count before
the first token (``message_start``), the matched stop string (vLLM's ``stop_reason``), and
tokenization (the worker's own ``/tokenize``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.upstream import UpstreamEngine
from modelgrid.worker import create_worker_app
from tests.api.test_upstream_gateway import Gateway
from tests.conftest import make_settings
from tests.scripted_upstream import AppThread, Exchange, Receive, ScriptedUpstream, Send, json_reply
from tests.support import ThreadServer, create_key, usage_rows

TOKEN = "worker-secret"
MSG = [{"role": "user", "content": "What is the capital of France?"}]  # 6 words


def gateway(tmp_path: Path, database_url: str, engine: UpstreamEngine) -> Gateway:
    settings = make_settings(tmp_path, database_url)
    server = Gateway(settings, lambda _s: [engine])
    server.built = [engine]
    server.api_key = create_key(settings.database_url, name="t").plaintext  # type: ignore[attr-defined]
    server.start()
    return server


@pytest.fixture
def via_worker(tmp_path: Path, database_url: str) -> Iterator[Gateway]:
    engine = FakeEngine("fake-model", context_length=64)
    worker = AppThread(create_worker_app(lambda: engine, token=TOKEN), "/health/ready").start()
    up = UpstreamEngine("up", f"{worker.base_url}/v1", upstream_model="fake-model", api_key=TOKEN)
    server = gateway(tmp_path, database_url, up)
    yield server
    server.stop()
    worker.stop()


def post(server: ThreadServer, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"x-api-key": server.api_key}  # type: ignore[attr-defined]
    return httpx.post(f"{server.base_url}{path}", json=body, headers=headers, timeout=10)


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (b.split("\n")[0][7:], json.loads(b.split("\n")[1][6:])) for b in text.strip().split("\n\n")
    ]


def test_exact_counts_and_stop_sequence_cross_the_wire(via_worker: Gateway) -> None:
    body = {"model": "up", "max_tokens": 16, "messages": MSG, "stop_sequences": ["capital"]}
    events = sse(post(via_worker, "/v1/messages", {**body, "stream": True}).text)
    start = events[0][1]["message"]
    assert start["usage"]["input_tokens"] == 6  # the worker's count, not the estimate (15)
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "capital"}
    whole = post(via_worker, "/v1/messages", body).json()  # a plain (non-streamed) upstream call
    assert (whole["stop_reason"], whole["stop_sequence"]) == ("stop_sequence", "capital")
    assert whole["content"] == [{"type": "text", "text": "Paris is the "}]
    counted = post(via_worker, "/v1/messages/count_tokens", {"model": "up", "messages": MSG})
    assert counted.status_code == 200 and counted.json() == {"input_tokens": 6}
    rows = usage_rows(via_worker, expect=2)
    assert [(r["endpoint"], r["prompt_tokens"]) for r in rows] == [("messages", 6)] * 2


def test_tokenize_on_the_workers_tokenizer(via_worker: Gateway) -> None:
    r = post(via_worker, "/tokenize", {"model": "up", "messages": MSG})
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 6 and r.json()["max_model_len"] == 64
    back = post(via_worker, "/detokenize", {"model": "up", "tokens": r.json()["tokens"]})
    assert back.json() == {"prompt": "What is the capital of France?"}
    bad = post(via_worker, "/detokenize", {"model": "up", "tokens": [1]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"  # the worker's


def test_an_upstream_without_tokenize(tmp_path: Path, database_url: str) -> None:
    async def no_tokenize(ex: Exchange, send: Send, receive: Receive) -> None:
        await json_reply(404, {"detail": "Not Found"})(ex, send, receive)

    upstream = AppThread(ScriptedUpstream(no_tokenize)).start()
    server = gateway(
        tmp_path, database_url, UpstreamEngine("up", f"{upstream.base_url}/v1", context_length=99)
    )
    try:
        r = post(server, "/tokenize", {"model": "up", "prompt": "hi"})
        assert r.status_code == 502 and r.json()["error"]["code"] == "tokenize_unsupported"
        c = post(server, "/v1/messages/count_tokens", {"model": "up", "messages": MSG})
        assert c.status_code == 502 and c.json()["error"]["type"] == "api_error"
    finally:
        server.stop()
        upstream.stop()


def test_responses_truncation_auto_counts_on_the_replica(via_worker: Gateway) -> None:
    """The gateway only estimates an upstream's prompt: ``truncation: "auto"`` counts it with
    the replica's own tokenizer (``/tokenize``) before dropping turns, so the worker's
    exact context check (64 "tokens") is met instead of refusing."""
    turns: list[dict[str, str]] = []
    for i in range(6):
        turns += [
            {"role": "user", "content": f"question {i} about the many things we discussed"},
            {"role": "assistant", "content": "an answer of exactly seven words here"},
        ]
    turns.append({"role": "user", "content": "What is the capital of France?"})
    body = {"model": "up", "input": turns, "max_output_tokens": 6, "store": False}
    headers = {"Authorization": f"Bearer {via_worker.api_key}"}  # type: ignore[attr-defined]
    url = f"{via_worker.base_url}/v1/responses"
    refused = httpx.post(url, json=body, headers=headers, timeout=10)
    assert refused.status_code == 400, refused.text
    fitted = httpx.post(url, json={**body, "truncation": "auto"}, headers=headers, timeout=10)
    assert fitted.status_code == 200, fitted.text
    usage = fitted.json()["usage"]
    assert usage["input_tokens"] + 6 <= 64 and usage["input_tokens"] > 20
