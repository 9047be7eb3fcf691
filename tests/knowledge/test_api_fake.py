"""Knowledge bases over a real uvicorn server: the HTTP API, background indexing through the
metered embedding call, hybrid retrieval, workspace isolation, bad input, deletion.

Embeddings come from ``HashEmbeddingEngine`` (bag of words, counts words as tokens), so
which chunk is nearest is known in advance.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.databases import BOTH_DATABASES
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.knowledge.pdf_fixture import tiny_pdf
from tests.support import ThreadServer, create_key, db_execute, db_rows, usage_rows

pytestmark = BOTH_DATABASES

GUIDE = b"""# Billing

Invoices are sent on the first day of every month. Payment is due within thirty days.

# Refunds

A refund is granted within fourteen days of purchase when the product is unopened.

# Shipping

Parcels leave the warehouse in Rotterdam every weekday and arrive within three days.
"""


@pytest.fixture
def server(server_factory: ServerFactory) -> ThreadServer:
    return server_factory(
        FakeEngine(),
        HashEmbeddingEngine(),
        knowledge={"poll_interval_s": 0.05, "chunk_tokens": 40, "chunk_overlap": 10},
    )


def h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def api(
    s: ThreadServer, method: str, path: str, key: str | None = None, **kw: Any
) -> httpx.Response:
    return httpx.request(
        method, f"{s.base_url}{path}", headers=h(key or s.api_key), timeout=30, **kw
    )


def make_kb(s: ThreadServer, key: str | None = None, name: str = "support") -> dict[str, Any]:
    r = api(s, "POST", "/v1/knowledge_bases", key, json={"name": name})
    assert r.status_code == 200, r.text
    return dict(r.json())


def upload(
    s: ThreadServer,
    kb: str,
    data: bytes,
    name: str = "guide.md",
    key: str | None = None,
    **form: str,
) -> httpx.Response:
    return api(
        s,
        "POST",
        f"/v1/knowledge_bases/{kb}/documents",
        key,
        files={"file": (name, data)},
        data=form,
    )


def wait_ready(s: ThreadServer, kb: str, doc: str, key: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = api(s, "GET", f"/v1/knowledge_bases/{kb}/documents/{doc}", key).json()
        if got["status"] in ("ready", "failed"):
            return dict(got)
        time.sleep(0.05)
    raise AssertionError(f"document {doc} not indexed: {got}")


def search(
    s: ThreadServer, kb: str, query: str, key: str | None = None, **kw: Any
) -> httpx.Response:
    return api(s, "POST", f"/v1/knowledge_bases/{kb}/search", key, json={"query": query, **kw})


def test_create_index_and_search(server: ThreadServer) -> None:
    kb = make_kb(server)
    assert kb["object"] == "knowledge_base"
    assert kb["embedding_model"] == "hash-embedding"
    assert kb["chunking"] == {"max_tokens": 40, "overlap_tokens": 10}
    assert kb["region"] == "local"
    r = upload(server, kb["id"], GUIDE)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["status"], doc["format"], doc["bytes"]) == ("pending", "markdown", len(GUIDE))
    done = wait_ready(server, kb["id"], doc["id"])
    assert done["status"] == "ready" and done["error"] is None
    assert done["chunks_total"] == done["chunks_done"] == 3  # one chunk per heading
    chunks = db_rows(server, "SELECT heading, tokens FROM knowledge_chunks ORDER BY ordinal")
    assert [c["heading"] for c in chunks] == ["Billing", "Refunds", "Shipping"]
    assert [c["tokens"] for c in chunks] == [16, 14, 13]  # words, the fake's tokens
    # indexing was billed through the metered embedding call, to the uploading key
    rows = usage_rows(server, expect=1)
    assert [(u["endpoint"], u["model"], u["status"]) for u in rows] == [
        ("embeddings", "hash-embedding", 200)
    ]
    assert rows[0]["prompt_tokens"] == (1 + 16) + (1 + 14) + (1 + 13)  # heading + text

    for mode in ("hybrid", "dense", "lexical"):
        r = search(server, kb["id"], "when is a refund granted", mode=mode, top_k=2)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "knowledge_base.search_results"
        assert body["mode"] == mode
        assert body["data"][0]["heading"] == "Refunds", (mode, body)
        # BM25 matches "refund" and "granted" only ("when is a" are stop words): one chunk
        assert len(body["data"]) == (1 if mode == "lexical" else 2)
    hybrid = search(server, kb["id"], "when is a refund granted").json()["data"]
    top = hybrid[0]
    assert (top["dense_rank"], top["lexical_rank"]) == (1, 1)
    assert top["score"] == 1.0  # first in both: 0.4 * 1 + 0.6 * 1 (knowledge.fusion.DEFAULT)
    got = api(server, "GET", f"/v1/knowledge_bases/{kb['id']}").json()
    assert got["documents"] == {"ready": 1}


def test_reciprocal_rank_fusion_when_configured(server_factory: ServerFactory) -> None:
    server = server_factory(
        FakeEngine(),
        HashEmbeddingEngine(),
        knowledge={
            "poll_interval_s": 0.05,
            "chunk_tokens": 40,
            "chunk_overlap": 10,
            "fusion": "rrf",
        },
    )
    kb = make_kb(server)
    wait_ready(server, kb["id"], upload(server, kb["id"], GUIDE).json()["id"])
    hits = search(server, kb["id"], "when is a refund granted", top_k=2).json()["data"]
    # RRF, k = 60, both rankings weighed 0.5: first in both, then second in dense alone
    assert [(h["heading"], h["dense_rank"], h["lexical_rank"]) for h in hits] == [
        ("Refunds", 1, 1),
        (hits[1]["heading"], 2, None),
    ]
    assert [h["score"] for h in hits] == [0.5 / 61 + 0.5 / 61, 0.5 / 62]


def test_other_workspaces_see_nothing(server: ThreadServer) -> None:
    other = create_key(server.settings.database_url, name="other", workspace="acme").plaintext
    mine = make_kb(server)
    theirs = make_kb(server, other, name="acme-kb")
    doc = upload(server, mine["id"], GUIDE).json()
    wait_ready(server, mine["id"], doc["id"])
    tdoc = upload(
        server, theirs["id"], b"Refunds at acme are never granted.", "a.txt", other
    ).json()
    wait_ready(server, theirs["id"], tdoc["id"], other)

    for method, path, kw in [
        ("GET", f"/v1/knowledge_bases/{mine['id']}", {}),
        ("DELETE", f"/v1/knowledge_bases/{mine['id']}", {}),
        ("GET", f"/v1/knowledge_bases/{mine['id']}/documents", {}),
        ("GET", f"/v1/knowledge_bases/{mine['id']}/documents/{doc['id']}", {}),
        ("DELETE", f"/v1/knowledge_bases/{mine['id']}/documents/{doc['id']}", {}),
        ("POST", f"/v1/knowledge_bases/{mine['id']}/search", {"json": {"query": "refund"}}),
    ]:
        r = api(server, method, path, other, **kw)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "knowledge_base_not_found"
        assert r.json()["error"]["type"] == "invalid_request_error"
    r = upload(server, mine["id"], b"sneaky", "x.txt", other)
    assert r.status_code == 404
    assert [k["id"] for k in api(server, "GET", "/v1/knowledge_bases", other).json()["data"]] == [
        theirs["id"]
    ]
    # every retrieval of each workspace returns only its own chunks
    own = {
        r["id"]
        for r in db_rows(
            server,
            "SELECT id FROM knowledge_chunks WHERE workspace_id = (SELECT workspace_id FROM knowledge_bases WHERE id = :kb)",
            kb=mine["id"],
        )
    }
    for mode in ("hybrid", "dense", "lexical"):
        for query in ("refund granted", "acme never", "Rotterdam"):
            hits = search(server, mine["id"], query, mode=mode, top_k=100).json()["data"]
            assert {hit["chunk_id"] for hit in hits} <= own
            assert hits or (mode, query) == ("lexical", "acme never")
            assert all("acme" not in hit["text"] for hit in hits)
            theirs_hits = search(server, theirs["id"], query, other, mode=mode, top_k=100).json()
            assert {hit["chunk_id"] for hit in theirs_hits["data"]}.isdisjoint(own)
    # and the index itself, asked for one workspace's knowledge base under another, is empty
    index = server.state.knowledge.retrieval.index
    acme_ws = db_rows(
        server, "SELECT workspace_id FROM knowledge_bases WHERE id = :kb", kb=theirs["id"]
    )[0]["workspace_id"]
    assert server.call(index.lexical(acme_ws, mine["id"], "refund", 10)) == []
    vec = b"\x00\x00\x80\x3f" + b"\x00" * 4 * 63
    assert server.call(index.dense(acme_ws, mine["id"], vec, 64, 10)) == []


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("empty.txt", b"", 400, "empty_document"),
        ("blank.md", b"   \n\n", 400, "empty_document"),
        ("bin.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00", 400, "binary_document"),
        ("latin1.txt", "café crème".encode("latin-1"), 400, "binary_document"),
        ("broken.pdf", b"%PDF-1.7\n%garbage with no objects", 400, "invalid_document"),
        ("fake.pdf", b"just text named pdf", 400, "invalid_document"),
        ("huge.txt", b"word " * 5000, 413, "request_too_large"),
    ],
)
def test_bad_documents_leave_nothing(
    server_factory: ServerFactory, name: str, data: bytes, status: int, code: str
) -> None:
    s = server_factory(
        FakeEngine(), HashEmbeddingEngine(), knowledge={"max_document_bytes": 10_000}
    )
    kb = make_kb(s)
    r = upload(s, kb["id"], data, name)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["code"], err["param"]) == (code, "file")
    assert db_rows(s, "SELECT count(*) AS n FROM knowledge_documents")[0]["n"] == 0
    assert db_rows(s, "SELECT count(*) AS n FROM knowledge_chunks")[0]["n"] == 0


def test_bad_requests(server: ThreadServer) -> None:
    r = api(server, "POST", "/v1/knowledge_bases", json={"name": "x", "embedding_model": "fake"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "embedding_model"
    r = api(
        server,
        "POST",
        "/v1/knowledge_bases",
        json={"name": "x", "chunking": {"max_tokens": 100, "overlap_tokens": 100}},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "chunking.overlap_tokens"
    r = api(server, "POST", "/v1/knowledge_bases", json={})
    assert r.status_code == 400 and r.json()["error"]["param"] == "name"
    kb = make_kb(server)
    r = search(server, kb["id"], "   ")
    assert r.status_code == 400 and r.json()["error"]["param"] == "query"
    r = search(server, kb["id"], "x", top_k=0)
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_k"
    r = upload(server, kb["id"], b"text", format="docx")
    assert r.status_code == 400 and r.json()["error"]["param"] == "format"
    r = api(server, "POST", f"/v1/knowledge_bases/{kb['id']}/documents", data={"x": "y"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_required_parameter"


def test_documents_carry_metadata_and_tags(server: ThreadServer) -> None:
    """``metadata`` (a JSON object, vector-store attributes' rules) and ``tags`` (a JSON array
    of strings) are stored with the document and echoed by add, get and list."""
    kb = make_kb(server)["id"]
    meta = {"team": "billing", "year": 2026, "ratio": 0.5, "draft": False}
    r = upload(server, kb, GUIDE, metadata=json.dumps(meta), tags=json.dumps(["faq", "en", "faq"]))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["metadata"], doc["tags"]) == (meta, ["faq", "en"])  # a repeat dropped
    plain = upload(server, kb, b"Parcels arrive within three days.", "plain.txt").json()
    assert (plain["metadata"], plain["tags"]) == ({}, [])
    got = wait_ready(server, kb, doc["id"])
    assert (got["status"], got["metadata"], got["tags"]) == ("ready", meta, ["faq", "en"])
    listed = api(server, "GET", f"/v1/knowledge_bases/{kb}/documents").json()["data"]
    assert [(d["id"], d["metadata"], d["tags"]) for d in listed] == [
        (doc["id"], meta, ["faq", "en"]),
        (plain["id"], {}, []),
    ]
    # empty ones are none
    r = upload(server, kb, b"Refunds take fourteen days.", "e.txt", metadata="{}", tags="[]")
    assert (r.json()["metadata"], r.json()["tags"]) == ({}, [])
    # repeats are dropped before the 20 are counted: 21 copies of one tag are one tag
    r = upload(server, kb, b"Returns take a week.", "r.txt", tags=json.dumps(["faq"] * 21))
    assert (r.status_code, r.json()["tags"]) == (200, ["faq"]), r.text


BAD_LABELS: list[tuple[dict[str, str], str, str]] = [
    ({"metadata": "team=billing"}, "metadata", "'metadata' must be JSON: an object."),
    ({"metadata": "[1]"}, "metadata", "'metadata' must be an object."),
    (  # a field that is there holds a value: JSON null is not absence
        {"metadata": "null"},
        "metadata",
        "'metadata' must be a JSON object, not null; leave the field out for none.",
    ),
    (
        {"tags": " null "},
        "tags",
        "'tags' must be a JSON array of strings, not null; leave the field out for none.",
    ),
    (  # Python's json reads NaN and Infinity, and 1e999 as inf: none is stored (as null)
        {"metadata": '{"a": NaN}'},
        "metadata",
        "'metadata' holds NaN: numbers must be finite (JSON has no NaN or Infinity).",
    ),
    ({"metadata": '{"a": -Infinity}'}, "metadata", "'metadata' holds -Infinity: numbers must"),
    ({"metadata": '{"a": 1e999}'}, "metadata", "'metadata' holds Infinity: numbers must be"),
    (
        {"metadata": json.dumps({f"k{i}": i for i in range(17)})},
        "metadata",
        "'metadata' has 17 keys; at most 16.",
    ),
    ({"metadata": json.dumps({"k" * 65: 1})}, "metadata", "keys are 1..64 characters"),
    ({"metadata": '{"team": ["a"]}'}, "metadata.team", "must be a string, number or boolean"),
    ({"metadata": json.dumps({"v": "x" * 513})}, "metadata.v", "is over 512 characters"),
    ({"tags": "faq"}, "tags", "'tags' must be JSON: an array of strings."),
    ({"tags": '"faq"'}, "tags", "'tags' must be an array of strings."),
    (
        {"tags": json.dumps([str(i) for i in range(21)])},
        "tags",
        "has 21 different tags; at most 20.",
    ),
    ({"tags": '["faq", 1]'}, "tags", "'tags[1]' must be a string of 1..64 characters."),
    ({"tags": '[""]'}, "tags", "'tags[0]' must be a string of 1..64 characters."),
    ({"tags": json.dumps(["t" * 65])}, "tags", "'tags[0]' must be a string of 1..64"),
    ({"tags": '["a\\u001bb"]'}, "tags", "'tags[0]' must not contain control characters"),
]


def test_bad_metadata_or_tags_store_nothing(server: ThreadServer) -> None:
    kb = make_kb(server)["id"]
    for form, param, message in BAD_LABELS:
        r = upload(server, kb, GUIDE, **form)
        assert r.status_code == 400, (form, r.text)
        err = r.json()["error"]
        assert err["param"] == param, (form, err)
        assert message in err["message"], (form, err)
    assert db_rows(server, "SELECT count(*) AS n FROM knowledge_documents")[0]["n"] == 0


def test_pdf_and_html_documents_index(server: ThreadServer) -> None:
    kb = make_kb(server)
    pdf = upload(
        server, kb["id"], tiny_pdf(["Warranty lasts two years", "Batteries excluded"]), "w.pdf"
    ).json()
    html = upload(server, kb["id"], b"<h1>Contact</h1><p>Call us on weekdays.</p>", "c.html").json()
    assert wait_ready(server, kb["id"], pdf["id"])["chunks_total"] == 2
    assert wait_ready(server, kb["id"], html["id"])["chunks_total"] == 1
    hits = search(server, kb["id"], "warranty years").json()["data"]
    assert (hits[0]["heading"], hits[0]["text"]) == ("page 1", "Warranty lasts two years")


def test_delete_removes_every_chunk_and_vector(server: ThreadServer) -> None:
    kb = make_kb(server)
    a = upload(server, kb["id"], GUIDE).json()
    b = upload(server, kb["id"], b"Rotterdam opening hours are nine to five.", "b.txt").json()
    wait_ready(server, kb["id"], a["id"])
    wait_ready(server, kb["id"], b["id"])
    a_ids = [
        r["id"]
        for r in db_rows(
            server, "SELECT id FROM knowledge_chunks WHERE document_id = :d", d=a["id"]
        )
    ]
    assert len(a_ids) == 3
    r = api(server, "DELETE", f"/v1/knowledge_bases/{kb['id']}/documents/{a['id']}")
    assert r.json() == {"id": a["id"], "object": "knowledge_base.document.deleted", "deleted": True}
    assert (
        api(server, "GET", f"/v1/knowledge_bases/{kb['id']}/documents/{a['id']}").status_code == 404
    )
    assert (
        db_rows(
            server, "SELECT count(*) AS n FROM knowledge_chunks WHERE document_id = :d", d=a["id"]
        )[0]["n"]
        == 0
    )
    for mode in ("dense", "lexical", "hybrid"):
        hits = search(server, kb["id"], "refund Rotterdam billing", mode=mode, top_k=100).json()[
            "data"
        ]
        assert {h["document_id"] for h in hits} == {b["id"]}
    index = server.state.knowledge.retrieval.index
    ws = db_rows(server, "SELECT workspace_id FROM knowledge_bases")[0]["workspace_id"]
    assert server.call(index.chunks(ws, a_ids)) == {}
    r = api(server, "DELETE", f"/v1/knowledge_bases/{kb['id']}")
    assert r.json()["deleted"] is True
    assert db_rows(server, "SELECT count(*) AS n FROM knowledge_chunks")[0]["n"] == 0
    assert db_rows(server, "SELECT count(*) AS n FROM knowledge_documents")[0]["n"] == 0
    assert api(server, "GET", f"/v1/knowledge_bases/{kb['id']}").status_code == 404


def test_a_key_barred_from_the_gateways_region_stores_nothing(server: ThreadServer) -> None:
    barred = create_key(server.settings.database_url, name="eu-only")
    db_execute(
        server,
        "UPDATE api_keys SET allowed_regions = :r WHERE id = :id",
        r='["eu-central"]',
        id=barred.key_id,
    )
    r = api(server, "POST", "/v1/knowledge_bases", barred.plaintext, json={"name": "x"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "region_not_allowed"
    kb = make_kb(server)  # the same workspace's knowledge base, made by an unbarred key
    r = upload(server, kb["id"], GUIDE, key=barred.plaintext)
    assert r.status_code == 403
    assert db_rows(server, "SELECT count(*) AS n FROM knowledge_documents")[0]["n"] == 0
