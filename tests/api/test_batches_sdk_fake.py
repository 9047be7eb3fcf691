"""The Batch API through the official ``openai`` SDK, as a customer automates a process:
``files.create`` → ``batches.create`` → poll → ``files.content``, on the scripted engine
(thousands of lines; chat, text completions and embeddings)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.fake_embedding import FakeEmbeddingEngine
from tests.conftest import ServerFactory

CHAT = "fake-model"


def lines(n: int, url: str, body: dict[str, Any]) -> bytes:
    return b"".join(
        json.dumps({"custom_id": f"t-{i}", "method": "POST", "url": url, "body": body}).encode()
        + b"\n"
        for i in range(n)
    )


def run_batch(c: openai.OpenAI, path: Path, data: bytes, endpoint: Any) -> Any:
    path.write_bytes(data)
    with path.open("rb") as f:
        uploaded = c.files.create(file=f, purpose="batch")
    batch = c.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,
        completion_window="24h",
        metadata={"job": "tickets"},
    )
    assert (batch.status, batch.input_file_id, batch.metadata) == (
        "validating",
        uploaded.id,
        {"job": "tickets"},
    )
    deadline = time.monotonic() + 60
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
        batch = c.batches.retrieve(batch.id)
    return batch


@pytest.mark.parametrize("prefix", ["", "/compatible-mode"])
def test_two_thousand_chat_lines(
    server_factory: ServerFactory, tmp_path: Path, prefix: str
) -> None:
    n = 2000 if not prefix else 50
    server = server_factory(FakeEngine(CHAT, "ok"), batch={"concurrency": 16})
    c = openai.OpenAI(
        base_url=f"{server.base_url}{prefix}/v1", api_key=server.api_key, max_retries=0
    )
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Classify: my order is late"}]}
    batch = run_batch(
        c, tmp_path / "in.jsonl", lines(n, "/v1/chat/completions", body), "/v1/chat/completions"
    )
    assert batch.status == "completed"
    assert (
        batch.request_counts.total,
        batch.request_counts.completed,
        batch.request_counts.failed,
    ) == (n, n, 0)
    assert batch.error_file_id is None and batch.output_file_id is not None
    out = [json.loads(x) for x in c.files.content(batch.output_file_id).read().splitlines()]
    assert [x["custom_id"] for x in out] == [f"t-{i}" for i in range(n)]
    first = out[0]["response"]
    assert first["status_code"] == 200
    assert first["body"]["choices"][0]["message"]["content"] == "ok"
    assert batch.usage.total_tokens == sum(
        x["response"]["body"]["usage"]["total_tokens"] for x in out
    )
    listed = c.batches.list(limit=10)
    assert [b.id for b in listed.data] == [batch.id]
    assert c.files.retrieve(batch.output_file_id).purpose == "batch_output"


def test_embeddings_and_completions_lines(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory(FakeEngine(CHAT, "yes"), FakeEmbeddingEngine("fake-embed"))
    c = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0)
    emb = run_batch(
        c,
        tmp_path / "emb.jsonl",
        lines(20, "/v1/embeddings", {"model": "fake-embed", "input": "a catalogue entry"}),
        "/v1/embeddings",
    )
    assert emb.status == "completed" and emb.request_counts.completed == 20
    [first, *_] = [json.loads(x) for x in c.files.content(emb.output_file_id).read().splitlines()]
    assert first["response"]["body"]["object"] == "list"
    assert len(first["response"]["body"]["data"][0]["embedding"]) > 0
    text = run_batch(
        c,
        tmp_path / "text.jsonl",
        lines(10, "/v1/completions", {"model": CHAT, "prompt": "Summarise:"}),
        "/v1/completions",
    )
    assert text.status == "completed" and text.request_counts.completed == 10
    [first, *_] = [json.loads(x) for x in c.files.content(text.output_file_id).read().splitlines()]
    assert first["response"]["body"]["choices"][0]["text"] == "yes"


def test_bad_batch_requests_are_clear_errors(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory()
    c = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        c.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert missing.value.body["param"] == "input_file_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as window:
        c.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="48h"
        )  # type: ignore[arg-type]
    assert window.value.body["param"] == "completion_window"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        c.batches.retrieve("batch_nope")
