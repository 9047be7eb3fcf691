"""The Responses API's ``file_search`` tool over a real uvicorn server: the gateway searches,
adds a ``file_search_call`` item, puts the chunks in the model's context, cites the files,
streams the tool's events in OpenAI's order and meters each call once.

The model is the scripted ``FakeEngine`` (it records what it was asked); embeddings come from
``HashEmbeddingEngine``. The official ``openai`` SDK parses the stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import httpx
import openai
import pytest

from modelgrid.core.types import InferenceRequest
from modelgrid.engines.base import PreparedRequest
from modelgrid.engines.embedding import Embeddings
from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.databases import BOTH_DATABASES
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.support import ThreadServer, usage_rows

pytestmark = BOTH_DATABASES

GUIDE = b"""# Refunds

A refund is granted within fourteen days of purchase when the product is unopened.
"""
SHIPPING = b"Parcels leave the warehouse in Rotterdam every weekday and arrive within three days."
REPLY = "Within fourteen days."


class Recording(FakeEngine):
    """The fake model, remembering the last conversation it was given."""

    def __init__(self) -> None:
        super().__init__(reply=REPLY, context_length=4096)
        self.seen: list[str] = []

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        self.seen = [m.content or "" for m in request.messages or ()]
        return super().prepare(request)


@pytest.fixture
def model() -> Recording:
    return Recording()


@pytest.fixture
def server(server_factory: ServerFactory, model: Recording) -> ThreadServer:
    return server_factory(model, HashEmbeddingEngine(), knowledge={"poll_interval_s": 0.05})


def api(s: ThreadServer, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {s.api_key}"}
    return httpx.request(method, f"{s.base_url}{path}", headers=headers, timeout=30, **kw)


@pytest.fixture
def store(server: ThreadServer) -> tuple[str, str, str]:
    """A vector store with two indexed files: (store id, refunds file id, shipping file id)."""
    ids = []
    for name, data in (("refunds.md", GUIDE), ("shipping.txt", SHIPPING)):
        r = api(
            server,
            "POST",
            "/v1/files",
            files={"file": (name, data)},
            data={"purpose": "assistants"},
        )
        ids.append(r.json()["id"])
    vs = api(server, "POST", "/v1/vector_stores", json={"name": "care", "file_ids": ids}).json()
    deadline = time.monotonic() + 20
    while api(server, "GET", f"/v1/vector_stores/{vs['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return vs["id"], ids[0], ids[1]


def client(s: ThreadServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{s.base_url}/v1", api_key=s.api_key, max_retries=0)


def test_file_search_answers_with_citations(
    server: ThreadServer, model: Recording, store: tuple[str, str, str]
) -> None:
    vs, refunds, shipping = store
    before = len(usage_rows(server, expect=2))  # the two files' indexing
    r = client(server).responses.create(
        model="fake-model",
        input="When is a refund granted?",
        tools=[{"type": "file_search", "vector_store_ids": [vs], "max_num_results": 1}],
        include=["file_search_call.results"],
    )
    call, msg = r.output
    assert call.type == "file_search_call"
    assert (call.status, call.queries) == ("completed", ["When is a refund granted?"])
    assert call.results is not None and len(call.results) == 1
    hit = call.results[0]
    assert (hit.file_id, hit.filename, hit.score) == (refunds, "refunds.md", 1.0)
    assert hit.text is not None and "refund is granted within fourteen days" in hit.text
    assert msg.type == "message"
    text = msg.content[0]
    assert text.type == "output_text" and text.text == REPLY
    assert [a.model_dump() for a in text.annotations] == [
        {"type": "file_citation", "file_id": refunds, "filename": "refunds.md", "index": len(REPLY)}
    ]
    # the chunk went into the user turn the model saw, before the question
    assert model.seen[-1].startswith("Use these excerpts of the files:\n\n[refunds.md]\n")
    assert model.seen[-1].endswith("Question: When is a refund granted?")
    assert "Rotterdam" not in model.seen[-1]  # max_num_results 1
    # one embedding call for the query, one generation: each metered once
    rows = usage_rows(server, expect=before + 2)
    time.sleep(0.3)
    rows = usage_rows(server, expect=before + 2)
    assert sorted(u["endpoint"] for u in rows[before:]) == ["embeddings", "responses"]
    assert r.usage is not None and r.usage.output_tokens == 3
    # the stored response keeps the item; a chained turn skips it
    stored = client(server).responses.retrieve(r.id)
    assert [o.type for o in stored.output] == ["file_search_call", "message"]
    again = client(server).responses.create(
        model="fake-model", input="And shipping?", previous_response_id=r.id
    )
    assert [o.type for o in again.output] == ["message"]
    assert model.seen[-3:] == ["When is a refund granted?", REPLY, "And shipping?"]
    # results are left out unless included; the tool is echoed
    plain = client(server).responses.create(
        model="fake-model",
        input="Where do parcels leave from?",
        tools=[{"type": "file_search", "vector_store_ids": [vs]}],
    )
    assert plain.output[0].type == "file_search_call" and plain.output[0].results is None
    cited = [a.file_id for a in plain.output[1].content[0].annotations]  # type: ignore[union-attr]
    assert cited[0] == shipping and set(cited) == {shipping, refunds}  # best first
    echoed = plain.tools[0].model_dump()
    assert (echoed["type"], echoed["vector_store_ids"], echoed["max_num_results"]) == (
        "file_search", [vs], 10,
    )  # fmt: skip


def test_file_search_streams_in_openais_order(
    server: ThreadServer, store: tuple[str, str, str]
) -> None:
    vs, refunds, _ = store
    with client(server).responses.create(
        model="fake-model",
        input="When is a refund granted?",
        tools=[{"type": "file_search", "vector_store_ids": [vs], "max_num_results": 1}],
        stream=True,
    ) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:7] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
    ]
    deltas = kinds.count("response.output_text.delta")
    assert kinds[7:] == [
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added = events[2]
    assert added.item.type == "file_search_call" and added.item.status == "in_progress"  # type: ignore[union-attr]
    assert events[3].item_id == added.item.id and events[3].output_index == 0  # type: ignore[union-attr]
    note = events[7 + 2 + deltas]
    assert note.annotation.model_dump() == {  # type: ignore[union-attr]
        "type": "file_citation", "file_id": refunds, "filename": "refunds.md", "index": len(REPLY),
    }  # fmt: skip
    final = events[-1].response  # type: ignore[union-attr]
    assert [o.type for o in final.output] == ["file_search_call", "message"]
    assert final.output[1].content[0].annotations[0].file_id == refunds


def test_file_search_errors(server: ThreadServer, store: tuple[str, str, str]) -> None:
    vs, _, _ = store
    for tools, status, param in [
        ([{"type": "file_search", "vector_store_ids": ["vs_nope"]}], 404, "tools[0].vector_store_ids[0]"),
        ([{"type": "function", "name": "f"}, {"type": "file_search", "vector_store_ids": [vs, "vs_x"]}],
         404, "tools[1].vector_store_ids[1]"),
        ([{"type": "file_search", "vector_store_ids": []}], 400, "tools[0].vector_store_ids"),
        ([{"type": "file_search", "vector_store_ids": [vs], "filters": {"type": "eq"}}], 400, "tools[0].filters.key"),
    ]:  # fmt: skip
        r = api(
            server,
            "POST",
            "/v1/responses",
            json={"model": "fake-model", "input": "refund?", "tools": tools},
        )
        assert (r.status_code, r.json()["error"]["param"]) == (status, param), r.text

    # hybrid_search weights the fusion (a convex combination of min-max normalised scores,
    # alpha = embedding / (embedding + text); default 0.4): by vector the shipping chunk is
    # first (cosine 0.62 vs 0.41), by BM25 the refunds chunk ("refund" is rarer than "days")
    def scores(ranking: dict[str, Any] | None) -> list[tuple[str, float]]:
        tool: dict[str, Any] = {
            "type": "file_search",
            "vector_store_ids": [vs],
            "max_num_results": 2,
        }
        if ranking is not None:
            tool["ranking_options"] = ranking
        r = api(server, "POST", "/v1/responses", json={
            "model": "fake-model", "input": "refund or parcels within days",
            "tools": [tool], "include": ["file_search_call.results"],
        })  # fmt: skip
        return [(x["filename"], x["score"]) for x in r.json()["output"][0]["results"]]

    assert scores(None) == [("refunds.md", 0.6), ("shipping.txt", 0.4)]
    weighted = {"hybrid_search": {"embedding_weight": 1, "text_weight": 0}}
    assert scores(weighted) == [("shipping.txt", 1.0), ("refunds.md", 0.0)]
    weighted = {"hybrid_search": {"embedding_weight": 3, "text_weight": 1}}
    assert scores(weighted) == [("shipping.txt", 0.75), ("refunds.md", 0.25)]
    # tool_choice: the search runs with "auto"/"required" (no function tools) and with
    # {"type": "file_search"}; "none" runs no tool
    for choice, searched in [
        ("auto", True),
        ("required", True),
        ({"type": "file_search"}, True),
        ("none", False),
    ]:
        r = api(server, "POST", "/v1/responses", json={
            "model": "fake-model", "input": "refund?", "tool_choice": choice,
            "tools": [{"type": "file_search", "vector_store_ids": [vs]}],
        })  # fmt: skip
        assert r.status_code == 200, (choice, r.text)
        kinds = [o["type"] for o in r.json()["output"]]
        assert kinds == (["file_search_call", "message"] if searched else ["message"]), choice
    # a stream refused before its first byte is a plain JSON error
    r = api(server, "POST", "/v1/responses", json={
        "model": "fake-model", "input": "refund?", "stream": True,
        "tools": [{"type": "file_search", "vector_store_ids": ["vs_nope"]}],
    })  # fmt: skip
    assert r.status_code == 404
    assert json.loads(r.text)["error"]["code"] == "vector_store_not_found"


class RecordingEmbedding(HashEmbeddingEngine):
    """The hash embedding engine, remembering every text it embedded."""

    def __init__(self) -> None:
        super().__init__(max_input_tokens=256)
        self.texts: list[str] = []

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        self.texts.extend(texts)
        return await super().embed(texts)


def test_a_long_query_is_cut_to_its_last_tokens_before_it_is_embedded(
    server_factory: ServerFactory, model: Recording
) -> None:
    embedding = RecordingEmbedding()
    s = server_factory(model, embedding, knowledge={"poll_interval_s": 0.05})
    f = api(s, "POST", "/v1/files", files={"file": ("refunds.md", GUIDE)},
            data={"purpose": "assistants"}).json()  # fmt: skip
    vs = api(s, "POST", "/v1/vector_stores", json={"name": "care", "file_ids": [f["id"]]}).json()
    deadline = time.monotonic() + 20
    while api(s, "GET", f"/v1/vector_stores/{vs['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    before = len(usage_rows(s, expect=1))
    # 336 words (the fake tokenizer's tokens), the question at the end
    pasted = " ".join(f"w{i}" for i in range(330))
    question = f"{pasted} When is a refund granted?"
    tail = " ".join(question.split()[-256:])
    embedding.texts.clear()
    r = api(s, "POST", "/v1/responses", json={
        "model": "fake-model", "input": question,
        "tools": [{"type": "file_search", "vector_store_ids": [vs["id"]]}],
        "include": ["file_search_call.results"],
    })  # fmt: skip
    assert r.status_code == 200, r.text
    call = r.json()["output"][0]
    assert call["queries"] == [question]
    assert [x["file_id"] for x in call["results"]] == [f["id"]]
    assert embedding.texts == [tail]
    r = api(s, "POST", f"/v1/vector_stores/{vs['id']}/search", json={"query": question})
    assert r.status_code == 200, r.text
    assert [x["file_id"] for x in r.json()["data"]] == [f["id"]]
    assert embedding.texts == [tail, tail]
    # metered: the tokens actually embedded
    rows = usage_rows(s, expect=before + 3)
    embedded = [u for u in rows[before:] if u["endpoint"] == "embeddings"]
    assert [u["prompt_tokens"] for u in embedded] == [256, 256]
    # over 8,000 characters: the tool searches for the message's end (200); a search's own
    # query is a 400, refused before anything is embedded or billed
    huge = "x" * 8500 + " When is a refund granted?"  # few words: the fake model counts them
    embedding.texts.clear()
    r = api(s, "POST", "/v1/responses", json={
        "model": "fake-model", "input": huge,
        "tools": [{"type": "file_search", "vector_store_ids": [vs["id"]]}],
    })  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["output"][0]["queries"] == [huge[-8000:]]
    billed = len(usage_rows(s, expect=before + 5))
    r = api(s, "POST", f"/v1/vector_stores/{vs['id']}/search", json={"query": huge})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "query")
    time.sleep(0.3)
    assert len(usage_rows(s, expect=billed)) == billed  # no embedding record for it
    assert len(embedding.texts) == 1
