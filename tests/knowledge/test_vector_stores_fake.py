"""OpenAI's vector stores over a real uvicorn server: stores, files, file batches, search,
expiry, errors and workspace isolation.

Embeddings come from ``HashEmbeddingEngine`` (bag of words), so which chunk is nearest is
known in advance; the indexer is the knowledge bases' own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from modelgrid.engines.embedding import Embeddings
from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.databases import BOTH_DATABASES
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.support import ThreadServer, create_key, db_execute, db_rows, usage_rows

pytestmark = BOTH_DATABASES

GUIDE = b"""# Billing

Invoices are sent on the first day of every month. Payment is due within thirty days.

# Refunds

A refund is granted within fourteen days of purchase when the product is unopened.
"""
SHIPPING = b"Parcels leave the warehouse in Rotterdam every weekday and arrive within three days."


class GatedEmbedding(HashEmbeddingEngine):
    """Embeds only while ``gate`` is set (a test holds indexing mid-way)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        await asyncio.to_thread(self.gate.wait, 20)
        return await super().embed(texts)


@pytest.fixture
def embedder() -> GatedEmbedding:
    return GatedEmbedding()


@pytest.fixture
def server(server_factory: ServerFactory, embedder: GatedEmbedding) -> ThreadServer:
    return server_factory(FakeEngine(), embedder, knowledge={"poll_interval_s": 0.05})


def api(
    s: ThreadServer, method: str, path: str, key: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or s.api_key}"}
    return httpx.request(method, f"{s.base_url}{path}", headers=headers, timeout=30, **kw)


def upload(
    s: ThreadServer, data: bytes, name: str, key: str | None = None, purpose: str = "assistants"
) -> str:
    r = api(s, "POST", "/v1/files", key, files={"file": (name, data)}, data={"purpose": purpose})
    assert r.status_code == 200, r.text
    assert r.json()["purpose"] == purpose
    return str(r.json()["id"])


def make_store(s: ThreadServer, key: str | None = None, **body: Any) -> dict[str, Any]:
    r = api(s, "POST", "/v1/vector_stores", key, json={"name": "support", **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_files(s: ThreadServer, vs: str, key: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    got: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = api(s, "GET", f"/v1/vector_stores/{vs}", key).json()
        if got["file_counts"]["in_progress"] == 0:
            return got
        time.sleep(0.05)
    raise AssertionError(f"files of {vs} not indexed: {got}")


def search(s: ThreadServer, vs: str, key: str | None = None, **body: Any) -> httpx.Response:
    return api(s, "POST", f"/v1/vector_stores/{vs}/search", key, json=body)


def test_store_files_search_and_delete(server: ThreadServer) -> None:
    guide = upload(server, GUIDE, "guide.md")
    ship = upload(server, SHIPPING, "shipping.txt")
    vs = make_store(
        server, metadata={"team": "care"}, expires_after={"anchor": "last_active_at", "days": 7}
    )
    assert vs["object"] == "vector_store"
    assert vs["id"].startswith("vs_")
    assert (vs["name"], vs["metadata"], vs["status"], vs["usage_bytes"]) == (
        "support", {"team": "care"}, "completed", 0,
    )  # fmt: skip
    assert vs["expires_after"] == {"anchor": "last_active_at", "days": 7}
    assert vs["expires_at"] - vs["last_active_at"] == 7 * 86400
    r = api(server, "POST", f"/v1/vector_stores/{vs['id']}/files", json={
        "file_id": guide, "attributes": {"topic": "billing", "year": 2024},
    })  # fmt: skip
    assert r.status_code == 200, r.text
    added = r.json()
    assert (added["id"], added["object"], added["status"], added["vector_store_id"]) == (
        guide, "vector_store.file", "in_progress", vs["id"],
    )  # fmt: skip
    assert added["chunking_strategy"] == {
        "type": "static",
        "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
    }
    small = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
    r = api(server, "POST", f"/v1/vector_stores/{vs['id']}/files", json={
        "file_id": ship, "attributes": {"topic": "shipping", "year": 2025}, "chunking_strategy": small,
    })  # fmt: skip
    assert r.status_code == 200, r.text
    done = wait_files(server, vs["id"])
    assert done["status"] == "completed"
    assert done["file_counts"] == {
        "in_progress": 0, "completed": 2, "failed": 0, "cancelled": 0, "total": 2,
    }  # fmt: skip
    assert done["usage_bytes"] == len(GUIDE) + len(SHIPPING)
    # adding a file twice answers the file as it is
    again = api(server, "POST", f"/v1/vector_stores/{vs['id']}/files", json={"file_id": guide})
    assert (again.json()["status"], again.json()["attributes"]) == (
        "completed", {"topic": "billing", "year": 2024},
    )  # fmt: skip

    files = api(server, "GET", f"/v1/vector_stores/{vs['id']}/files?order=asc").json()
    assert [f["id"] for f in files["data"]] == [guide, ship]
    assert files["data"][1]["chunking_strategy"]["static"]["max_chunk_size_tokens"] == 100
    assert files["data"][0]["usage_bytes"] == len(GUIDE)
    page = api(server, "GET", f"/v1/vector_stores/{vs['id']}/files?order=asc&limit=1").json()
    assert ([f["id"] for f in page["data"]], page["has_more"]) == ([guide], True)
    nxt = api(server, "GET", f"/v1/vector_stores/{vs['id']}/files?order=asc&after={guide}").json()
    assert ([f["id"] for f in nxt["data"]], nxt["has_more"]) == ([ship], False)
    prev = api(server, "GET", f"/v1/vector_stores/{vs['id']}/files?order=asc&before={ship}").json()
    assert [f["id"] for f in prev["data"]] == [guide]
    failed = api(server, "GET", f"/v1/vector_stores/{vs['id']}/files?filter=failed").json()
    assert failed["data"] == []
    content = api(server, "GET", f"/v1/vector_stores/{vs['id']}/files/{ship}/content").json()
    assert content["data"] == [{"type": "text", "text": SHIPPING.decode()}]

    r = search(server, vs["id"], query="when is a refund granted", max_num_results=2)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["object"] == "vector_store.search_results.page"
    assert page["search_query"] == ["when is a refund granted"]
    top = page["data"][0]
    assert (top["file_id"], top["filename"], top["attributes"]) == (
        guide, "guide.md", {"topic": "billing", "year": 2024},
    )  # fmt: skip
    assert top["score"] == 1.0  # first by vector and by BM25
    assert "refund is granted" in top["content"][0]["text"]
    assert len(page["data"]) == 2
    # attribute filters keep only the files that pass them
    only_ship = search(
        server,
        vs["id"],
        query="refund",
        filters={"type": "eq", "key": "topic", "value": "shipping"},
    ).json()
    assert {d["file_id"] for d in only_ship["data"]} == {ship}
    newer = search(server, vs["id"], query="refund", filters={
        "type": "and", "filters": [{"type": "gte", "key": "year", "value": 2024},
                                   {"type": "ne", "key": "topic", "value": "shipping"}],
    }).json()  # fmt: skip
    assert {d["file_id"] for d in newer["data"]} == {guide}
    none = search(
        server, vs["id"], query="refund", filters={"type": "gt", "key": "year", "value": 2030}
    ).json()
    assert none["data"] == []
    # a threshold of 1.0 keeps the chunk first in both retrievers only
    best = search(
        server, vs["id"], query="when is a refund granted", ranking_options={"score_threshold": 1.0}
    ).json()
    assert [d["score"] for d in best["data"]] == [1.0]

    # the query's embedding is billed to the caller, one call per search; a filter no file
    # passes embeds nothing
    rows = usage_rows(server, expect=6)
    assert [u["endpoint"] for u in rows] == ["embeddings"] * 6  # 2 files + 4 searches

    r = api(
        server,
        "POST",
        f"/v1/vector_stores/{vs['id']}/files/{guide}",
        json={"attributes": {"topic": "money"}},
    )
    assert r.json()["attributes"] == {"topic": "money"}
    r = api(
        server,
        "POST",
        f"/v1/vector_stores/{vs['id']}",
        json={"name": "care", "expires_after": None},
    )
    assert (r.json()["name"], r.json()["expires_after"], r.json()["expires_at"]) == (
        "care",
        None,
        None,
    )
    assert r.json()["metadata"] == {"team": "care"}

    r = api(server, "DELETE", f"/v1/vector_stores/{vs['id']}/files/{guide}")
    assert r.json() == {"id": guide, "object": "vector_store.file.deleted", "deleted": True}
    assert api(server, "GET", f"/v1/vector_stores/{vs['id']}/files/{guide}").status_code == 404
    left = db_rows(
        server,
        "SELECT count(*) AS n FROM knowledge_chunks WHERE knowledge_base_id = :kb",
        kb=vs["id"],
    )
    assert left[0]["n"] == 1  # the shipping file's one chunk
    assert api(server, "GET", f"/v1/files/{guide}").status_code == 200  # the upload stays
    r = api(server, "DELETE", f"/v1/vector_stores/{vs['id']}")
    assert r.json() == {"id": vs["id"], "object": "vector_store.deleted", "deleted": True}
    assert api(server, "GET", f"/v1/vector_stores/{vs['id']}").status_code == 404
    assert db_rows(server, "SELECT count(*) AS n FROM knowledge_chunks")[0]["n"] == 0


def test_list_pages_both_ways(server: ThreadServer) -> None:
    ids = [make_store(server, name=f"s{i}")["id"] for i in range(3)]
    desc = api(server, "GET", "/v1/vector_stores").json()
    assert [v["id"] for v in desc["data"]] == ids[::-1]
    assert (desc["first_id"], desc["last_id"], desc["has_more"]) == (ids[2], ids[0], False)
    one = api(server, "GET", "/v1/vector_stores?limit=1&order=asc").json()
    assert ([v["id"] for v in one["data"]], one["has_more"]) == ([ids[0]], True)
    after = api(server, "GET", f"/v1/vector_stores?order=asc&after={ids[0]}").json()
    assert [v["id"] for v in after["data"]] == ids[1:]
    before = api(server, "GET", f"/v1/vector_stores?before={ids[0]}&limit=1").json()
    assert ([v["id"] for v in before["data"]], before["has_more"]) == ([ids[1]], True)
    # a knowledge base is no vector store; a vector store is a knowledge base
    kb = api(server, "POST", "/v1/knowledge_bases", json={"name": "kb"}).json()
    assert api(server, "GET", f"/v1/vector_stores/{kb['id']}").status_code == 404
    assert len(api(server, "GET", "/v1/vector_stores").json()["data"]) == 3
    listed = api(server, "GET", "/v1/knowledge_bases").json()["data"]
    assert [k["id"] for k in listed] == [*ids, kb["id"]]
    r = api(
        server,
        "POST",
        f"/v1/knowledge_bases/{ids[0]}/documents",
        files={"file": ("a.txt", b"text")},
    )
    assert (r.status_code, r.json()["error"]["param"]) == (400, "knowledge_base_id")


def test_create_with_file_ids_and_bad_files(server: ThreadServer) -> None:
    guide = upload(server, GUIDE, "guide.md")
    binary = upload(server, b"\x00\x01\x02 binary", "blob.txt")
    vs = make_store(server, file_ids=[guide, binary])
    done = wait_files(server, vs["id"])
    assert done["file_counts"] == {
        "in_progress": 0, "completed": 1, "failed": 1, "cancelled": 0, "total": 2,
    }  # fmt: skip
    bad = api(server, "GET", f"/v1/vector_stores/{vs['id']}/files/{binary}").json()
    assert bad["status"] == "failed"
    assert bad["last_error"]["code"] == "invalid_file"
    assert "binary" in bad["last_error"]["message"]
    assert bad["usage_bytes"] == 0
    only_failed = api(server, "GET", f"/v1/vector_stores/{vs['id']}/files?filter=failed").json()
    assert [f["id"] for f in only_failed["data"]] == [binary]


def test_file_batches(server: ThreadServer, embedder: GatedEmbedding) -> None:
    a = upload(server, GUIDE, "guide.md")
    b = upload(server, SHIPPING, "shipping.txt")
    vs = make_store(server)
    r = api(server, "POST", f"/v1/vector_stores/{vs['id']}/file_batches", json={
        "file_ids": [a, b], "attributes": {"src": "batch"},
    })  # fmt: skip
    assert r.status_code == 200, r.text
    batch = r.json()
    assert (batch["object"], batch["vector_store_id"]) == ("vector_store.files_batch", vs["id"])
    assert batch["id"].startswith("vsfb_")
    assert batch["file_counts"]["total"] == 2
    wait_files(server, vs["id"])
    got = api(server, "GET", f"/v1/vector_stores/{vs['id']}/file_batches/{batch['id']}").json()
    assert (got["status"], got["file_counts"]["completed"]) == ("completed", 2)
    files = api(
        server, "GET", f"/v1/vector_stores/{vs['id']}/file_batches/{batch['id']}/files"
    ).json()
    assert sorted(f["id"] for f in files["data"]) == sorted([a, b])
    assert {f["attributes"]["src"] for f in files["data"]} == {"batch"}

    # cancelling while the indexer is held mid-way: nothing of the file is written
    embedder.gate.clear()
    c = upload(server, b"Gift cards never expire and can be used in every shop.", "gift.txt")
    r = api(server, "POST", f"/v1/vector_stores/{vs['id']}/file_batches", json={
        "files": [{"file_id": c, "attributes": {"kind": "gift"}}],
    })  # fmt: skip
    held = r.json()
    assert held["status"] == "in_progress"
    cancelled = api(
        server, "POST", f"/v1/vector_stores/{vs['id']}/file_batches/{held['id']}/cancel"
    ).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["file_counts"] == {
        "in_progress": 0, "completed": 0, "failed": 0, "cancelled": 1, "total": 1,
    }  # fmt: skip
    embedder.gate.set()
    time.sleep(0.3)  # the held indexing call returns; its write must find the file cancelled
    gift = api(server, "GET", f"/v1/vector_stores/{vs['id']}/files/{c}").json()
    assert gift["status"] == "cancelled"
    rows = db_rows(
        server,
        "SELECT count(*) AS n FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id WHERE d.file_id = :f",
        f=c,
    )
    assert rows[0]["n"] == 0
    both = api(
        server,
        "POST",
        f"/v1/vector_stores/{vs['id']}/file_batches",
        json={"file_ids": [a], "files": [{"file_id": a}]},
    )
    assert (both.status_code, both.json()["error"]["param"]) == (400, "file_ids")
    unknown = api(
        server,
        "POST",
        f"/v1/vector_stores/{vs['id']}/file_batches",
        json={"file_ids": [a, "file-nope"]},
    )
    assert (unknown.status_code, unknown.json()["error"]["param"]) == (404, "file_ids[1]")


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}}},
         400, "chunking_strategy.static.max_chunk_size_tokens"),
        ({"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 201}}},
         400, "chunking_strategy.static.chunk_overlap_tokens"),
        ({"expires_after": {"anchor": "last_active_at", "days": 0}}, 400, "expires_after.days"),
        ({"expires_after": {"anchor": "created_at", "days": 3}}, 400, "expires_after.anchor"),
        ({"metadata": {str(i): "x" for i in range(17)}}, 400, "metadata"),
        ({"file_ids": ["file-nope"]}, 404, "file_ids[0]"),
    ],
)  # fmt: skip
def test_bad_creates(server: ThreadServer, body: dict[str, Any], status: int, param: str) -> None:
    r = api(server, "POST", "/v1/vector_stores", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
    assert api(server, "GET", "/v1/vector_stores").json()["data"] == []  # nothing made


def test_bad_requests(server: ThreadServer) -> None:
    vs = make_store(server)["id"]
    batch_file = api(
        server,
        "POST",
        "/v1/files",
        files={
            "file": (
                "b.jsonl",
                b'{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "fake-model", "messages": []}}\n',
            )
        },
        data={"purpose": "batch"},
    )
    assert batch_file.status_code == 200, batch_file.text
    r = api(
        server, "POST", f"/v1/vector_stores/{vs}/files", json={"file_id": batch_file.json()["id"]}
    )
    assert (r.status_code, r.json()["error"]["param"], r.json()["error"]["code"]) == (
        400,
        "file_id",
        "invalid_file",
    )
    r = api(server, "POST", f"/v1/vector_stores/{vs}/files", json={"file_id": "file-nope"})
    assert (r.status_code, r.json()["error"]["param"], r.json()["error"]["code"]) == (
        404,
        "file_id",
        "file_not_found",
    )
    r = api(
        server,
        "POST",
        f"/v1/vector_stores/{vs}/files",
        json={"file_id": upload(server, GUIDE, "g.md"), "attributes": {"a": [1]}},
    )
    assert (r.status_code, r.json()["error"]["param"]) == (400, "attributes.a")
    r = api(server, "POST", "/v1/vector_stores/vs_nope/files", json={"file_id": "file-x"})
    assert (r.status_code, r.json()["error"]["param"], r.json()["error"]["code"]) == (
        404,
        "vector_store_id",
        "vector_store_not_found",
    )
    for body, param in [
        ({"query": "x", "max_num_results": 51}, "max_num_results"),
        ({"query": "x", "filters": {"type": "near", "key": "a", "value": 1}}, "filters.type"),
        ({"query": ""}, "query"),
        ({"max_num_results": 3}, "query"),
        (
            {"query": "x", "ranking_options": {"score_threshold": 1.5}},
            "ranking_options.score_threshold",
        ),
    ]:
        r = search(server, vs, **body)
        assert (r.status_code, r.json()["error"]["param"]) == (400, param), (body, r.text)
    r = api(server, "GET", f"/v1/vector_stores/{vs}/files?filter=done")
    assert (r.status_code, r.json()["error"]["param"]) == (400, "filter")
    r = api(server, "GET", "/v1/vector_stores?after=vs_nope")
    assert (r.status_code, r.json()["error"]["param"]) == (404, "after")
    r = api(
        server, "POST", "/v1/files", files={"file": ("e.txt", b"")}, data={"purpose": "assistants"}
    )
    assert r.status_code == 400


def test_expiry_answers_expired_and_sweeps(server: ThreadServer) -> None:
    guide = upload(server, GUIDE, "guide.md")
    vs = make_store(server, file_ids=[guide], expires_after={"anchor": "last_active_at", "days": 1})
    wait_files(server, vs["id"])
    assert search(server, vs["id"], query="refund").status_code == 200
    db_execute(
        server,
        "UPDATE knowledge_bases SET expires_at = :t WHERE id = :id",
        t="2020-01-01 00:00:00",
        id=vs["id"],
    )
    got = api(server, "GET", f"/v1/vector_stores/{vs['id']}").json()
    assert got["status"] == "expired"
    r = search(server, vs["id"], query="refund")
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["param"]) == (
        400,
        "vector_store_expired",
        "vector_store_id",
    )
    r = api(server, "POST", f"/v1/vector_stores/{vs['id']}/files", json={"file_id": guide})
    assert r.json()["error"]["code"] == "vector_store_expired"
    assert server.call(server.state.knowledge.stores.sweep_expired()) == 1
    assert db_rows(server, "SELECT count(*) AS n FROM knowledge_chunks")[0]["n"] == 0
    assert db_rows(server, "SELECT count(*) AS n FROM knowledge_documents")[0]["n"] == 0
    after = api(server, "GET", f"/v1/vector_stores/{vs['id']}").json()
    assert (after["status"], after["file_counts"]["total"], after["usage_bytes"]) == (
        "expired",
        0,
        0,
    )
    assert server.call(server.state.knowledge.stores.sweep_expired()) == 0  # swept once


def test_other_workspaces_see_nothing(server: ThreadServer) -> None:
    other = create_key(server.settings.database_url, name="other", workspace="acme").plaintext
    mine_file = upload(server, GUIDE, "guide.md")
    mine = make_store(server, file_ids=[mine_file])
    their_file = upload(
        server,
        b"Refunds at acme are never granted, not even for unopened products.",
        "acme.txt",
        other,
    )
    theirs = make_store(server, other, file_ids=[their_file])
    wait_files(server, mine["id"])
    wait_files(server, theirs["id"], other)
    for method, path, kw in [
        ("GET", f"/v1/vector_stores/{mine['id']}", {}),
        ("POST", f"/v1/vector_stores/{mine['id']}", {"json": {"name": "x"}}),
        ("DELETE", f"/v1/vector_stores/{mine['id']}", {}),
        ("POST", f"/v1/vector_stores/{mine['id']}/search", {"json": {"query": "refund"}}),
        ("GET", f"/v1/vector_stores/{mine['id']}/files", {}),
        ("POST", f"/v1/vector_stores/{mine['id']}/files", {"json": {"file_id": their_file}}),
        ("GET", f"/v1/vector_stores/{mine['id']}/files/{mine_file}", {}),
        ("GET", f"/v1/vector_stores/{mine['id']}/files/{mine_file}/content", {}),
        ("DELETE", f"/v1/vector_stores/{mine['id']}/files/{mine_file}", {}),
        (
            "POST",
            f"/v1/vector_stores/{mine['id']}/file_batches",
            {"json": {"file_ids": [their_file]}},
        ),
    ]:
        r = api(server, method, path, other, **kw)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "vector_store_not_found"
    # my file id in their store is unknown to them
    r = api(
        server,
        "POST",
        f"/v1/vector_stores/{theirs['id']}/files",
        other,
        json={"file_id": mine_file},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (404, "file_not_found")
    assert [v["id"] for v in api(server, "GET", "/v1/vector_stores", other).json()["data"]] == [
        theirs["id"]
    ]
    # no search of either workspace returns the other's file
    for key, vs, own in ((None, mine["id"], mine_file), (other, theirs["id"], their_file)):
        for query in ("refund granted", "acme never unopened", "invoices month"):
            hits = search(server, vs, key, query=query, max_num_results=50).json()["data"]
            assert hits and {h["file_id"] for h in hits} == {own}
    r = api(server, "POST", "/v1/responses", other, json={
        "model": "fake-model", "input": "refund?",
        "tools": [{"type": "file_search", "vector_store_ids": [mine["id"]]}],
    })  # fmt: skip
    assert (r.status_code, r.json()["error"]["param"]) == (404, "tools[0].vector_store_ids[0]")


def test_a_key_barred_from_the_stores_region(server: ThreadServer) -> None:
    vs = make_store(server)
    barred = create_key(server.settings.database_url, name="eu-only")
    db_execute(
        server,
        "UPDATE api_keys SET allowed_regions = :r WHERE id = :id",
        r='["eu-central"]',
        id=barred.key_id,
    )
    r = search(server, vs["id"], barred.plaintext, query="refund")
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["param"]) == (
        403,
        "region_not_allowed",
        "vector_store_id",
    )
    r = api(server, "POST", "/v1/vector_stores", barred.plaintext, json={"name": "x"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "region_not_allowed")
    r = api(server, "POST", "/v1/responses", barred.plaintext, json={
        "model": "fake-model", "input": "refund?", "store": False,  # else 403 on "store" first
        "tools": [{"type": "file_search", "vector_store_ids": [vs["id"]]}],
    })  # fmt: skip
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["param"]) == (
        403, "region_not_allowed", "tools[0].vector_store_ids[0]",
    )  # fmt: skip


def test_the_openai_sdk_reads_every_object(server: ThreadServer) -> None:
    import io

    import openai

    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0)
    vs = client.vector_stores.create(
        name="sdk",
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 20},
        },
    )
    f1 = client.files.create(file=("guide.md", io.BytesIO(GUIDE)), purpose="assistants")
    f2 = client.files.create(file=("ship.txt", io.BytesIO(SHIPPING)), purpose="assistants")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=vs.id, file_ids=[f1.id, f2.id], poll_interval_ms=50
    )
    assert (batch.status, batch.file_counts.completed, batch.file_counts.total) == (
        "completed",
        2,
        2,
    )
    listed = client.vector_stores.file_batches.list_files(
        batch_id=batch.id, vector_store_id=vs.id, order="asc"
    )
    assert [f.id for f in listed] == [f1.id, f2.id]
    assert listed.data[0].chunking_strategy is not None
    assert listed.data[0].chunking_strategy.model_dump() == {
        "type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 20},
    }  # fmt: skip
    got = client.vector_stores.files.retrieve(file_id=f2.id, vector_store_id=vs.id)
    assert (got.status, got.usage_bytes, got.vector_store_id) == ("completed", len(SHIPPING), vs.id)
    parts = list(client.vector_stores.files.content(file_id=f2.id, vector_store_id=vs.id))
    assert [(p.type, p.text) for p in parts] == [("text", SHIPPING.decode())]
    updated = client.vector_stores.files.update(
        file_id=f2.id, vector_store_id=vs.id, attributes={"n": 2}
    )
    assert updated.attributes == {"n": 2}
    hits = list(client.vector_stores.search(vector_store_id=vs.id, query="Rotterdam parcels",
                                            filters={"type": "eq", "key": "n", "value": 2}))  # fmt: skip
    assert [h.file_id for h in hits] == [f2.id] and hits[0].score == 1.0
    stores = client.vector_stores.list(limit=10)
    assert [s.id for s in stores] == [vs.id] and stores.data[0].file_counts.completed == 2
    changed = client.vector_stores.update(
        vector_store_id=vs.id, name="renamed", metadata={"k": "v"}
    )
    assert (changed.name, changed.metadata) == ("renamed", {"k": "v"})
    gone = client.vector_stores.files.delete(file_id=f1.id, vector_store_id=vs.id)
    assert gone.deleted and gone.id == f1.id
    assert client.vector_stores.delete(vector_store_id=vs.id).deleted
    with pytest.raises(openai.NotFoundError) as caught:
        client.vector_stores.retrieve(vector_store_id=vs.id)
    assert caught.value.body["code"] == "vector_store_not_found"  # type: ignore[index]


def test_a_search_moves_last_active_at_at_most_once_a_minute(server: ThreadServer) -> None:
    vs = make_store(server, expires_after={"anchor": "last_active_at", "days": 1})
    db_execute(
        server,
        "UPDATE knowledge_bases SET last_active_at = :a, expires_at = :e WHERE id = :id",
        a="2026-01-01 00:00:00+00:00", e="2026-01-02 00:00:00+00:00", id=vs["id"],
    )  # fmt: skip
    stale = api(server, "GET", f"/v1/vector_stores/{vs['id']}").json()
    assert stale["last_active_at"] == 1767225600 and stale["status"] == "expired"
    db_execute(server, "UPDATE knowledge_bases SET expires_at = NULL WHERE id = :id", id=vs["id"])
    assert search(server, vs["id"], query="refund").status_code == 200
    moved = api(server, "GET", f"/v1/vector_stores/{vs['id']}").json()
    assert abs(moved["last_active_at"] - time.time()) < 30
    assert moved["expires_at"] - moved["last_active_at"] == 86400
    # 30 s ago is within the minute: the next search writes nothing
    recent = datetime.now(UTC) - timedelta(seconds=30)
    db_execute(
        server,
        "UPDATE knowledge_bases SET last_active_at = :a WHERE id = :id",
        a=recent,
        id=vs["id"],
    )
    assert search(server, vs["id"], query="refund").status_code == 200
    again = api(server, "GET", f"/v1/vector_stores/{vs['id']}").json()
    assert again["last_active_at"] == int(recent.timestamp())


def test_a_store_an_app_uses_cannot_be_deleted(server: ThreadServer) -> None:
    """The 409 names the store as the route does: ``vector_store_id``."""
    vs = make_store(server)["id"]
    body = {"name": "a", "model": "fake-model", "knowledge_base_ids": [vs]}
    app = api(server, "POST", "/v1/apps", json=body)
    assert app.status_code == 200, app.text
    r = api(server, "DELETE", f"/v1/vector_stores/{vs}")
    assert (r.status_code, r.json()["error"]) == (
        409,
        {
            "message": f"The vector store {vs} is used by the app(s) {app.json()['id']}: remove "
            "it from them first.",
            "type": "invalid_request_error",
            "param": "vector_store_id",
            "code": "conflict",
        },
    )
    assert api(server, "GET", f"/v1/vector_stores/{vs}").status_code == 200  # still there
