"""Vector stores and the ``file_search`` tool with the real Qwen and embedding models behind a
real server, through the official ``openai`` SDK (only its base URL changed):
``vector_stores.create``, ``files.upload_and_poll``, ``vector_stores.search``, and
``responses.create`` with ``file_search``, streamed and not, citing the right file."""

from __future__ import annotations

import io
import time

import openai
import pytest

from tests.support import ProcessServer, db_rows

pytestmark = [pytest.mark.model, pytest.mark.e2e]
MODEL = "qwen2.5-coder-0.5b-instruct"
KETTLE = b"""# Returns

Customers may return the Zephyr kettle within 45 days of delivery for a full refund.
"""
SHIPPING = b"""# Shipping

Orders ship from Lyon. Delivery takes four working days within the EU.
"""
QUESTION = "How many days do I have to return the Zephyr kettle?"


def _client(s: ProcessServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{s.base_url}/v1",
        api_key=s.api_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=120,
    )


def _counts(s: ProcessServer) -> dict[str, int]:
    rows = db_rows(
        s.db_path,  # type: ignore[attr-defined]
        "SELECT endpoint, count(*) AS n FROM usage_records GROUP BY endpoint",
    )
    return {r["endpoint"]: int(r["n"]) for r in rows}


@pytest.fixture(scope="module")
def store(model_server: ProcessServer) -> tuple[str, str, str]:
    """A vector store with both files indexed: (store id, returns file id, shipping file id)."""
    client = _client(model_server)
    vs = client.vector_stores.create(name="shop policy", metadata={"shop": "zephyr"})
    assert (vs.status, vs.file_counts.total) == ("completed", 0)
    ids = []
    for name, data in (("returns.md", KETTLE), ("shipping.md", SHIPPING)):
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=vs.id, file=(name, io.BytesIO(data)), poll_interval_ms=100
        )
        assert (done.status, done.last_error) == ("completed", None), done
        assert done.usage_bytes == len(data)
        ids.append(done.id)
    got = client.vector_stores.retrieve(vs.id)
    assert (got.status, got.file_counts.completed, got.usage_bytes) == (
        "completed",
        2,
        len(KETTLE) + len(SHIPPING),
    )
    return vs.id, ids[0], ids[1]


def test_search_finds_the_right_file(
    model_server: ProcessServer, store: tuple[str, str, str]
) -> None:
    vs, returns, shipping = store
    page = _client(model_server).vector_stores.search(
        vector_store_id=vs, query="how long can I return the kettle", max_num_results=2
    )
    hits = list(page)
    assert [h.file_id for h in hits] == [returns, shipping]
    assert hits[0].filename == "returns.md" and hits[0].score == 1.0
    assert "45 days" in hits[0].content[0].text
    only = _client(model_server).vector_stores.search(
        vector_store_id=vs,
        query="kettle",
        filters={"type": "eq", "key": "missing", "value": 1},
    )
    assert list(only) == []


def test_responses_file_search_cites_the_file(
    model_server: ProcessServer, store: tuple[str, str, str]
) -> None:
    vs, returns, _ = store
    time.sleep(0.3)  # earlier calls' usage flushed (every 0.05 s)
    before = _counts(model_server)
    r = _client(model_server).responses.create(
        model=MODEL,
        input=QUESTION,
        instructions="Answer in one short sentence.",
        tools=[{"type": "file_search", "vector_store_ids": [vs], "max_num_results": 1}],
        include=["file_search_call.results"],
        temperature=0,
        max_output_tokens=24,
    )
    call, msg = r.output
    assert call.type == "file_search_call" and call.queries == [QUESTION]
    assert call.results is not None and call.results[0].file_id == returns
    assert msg.type == "message"
    text = msg.content[0]
    assert text.type == "output_text"
    assert "45" in text.text, text.text
    assert [(a.type, a.file_id, a.filename) for a in text.annotations] == [
        ("file_citation", returns, "returns.md")
    ]
    assert r.usage is not None and r.usage.input_tokens > 30 and 0 < r.usage.output_tokens <= 24
    # the generation and the query's embedding: each recorded once
    want = {
        "responses": before.get("responses", 0) + 1,
        "embeddings": before.get("embeddings", 0) + 1,
    }
    deadline = time.monotonic() + 10
    while _counts(model_server) != {**before, **want} and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert _counts(model_server) == {**before, **want}


def test_responses_file_search_streamed(
    model_server: ProcessServer, store: tuple[str, str, str]
) -> None:
    vs, returns, _ = store
    with _client(model_server).responses.stream(
        model=MODEL,
        input=QUESTION,
        instructions="Answer in one short sentence.",
        tools=[{"type": "file_search", "vector_store_ids": [vs], "max_num_results": 1}],
        temperature=0,
        max_output_tokens=24,
    ) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[2:7] == [
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
    ]
    assert "response.output_text.annotation.added" in kinds
    assert kinds[-1] == "response.completed"
    text = final.output[1].content[0]  # type: ignore[union-attr]
    assert "45" in text.text, text.text
    assert [a.file_id for a in text.annotations] == [returns]
