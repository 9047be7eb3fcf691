"""Apps (DashScope's Application API) over a real uvicorn server and the scripted engines:
managing apps, the completion's JSON and SSE wire shape (exact bytes), sessions over turns,
retrieval with references, workspace isolation, and bad input. The official ``dashscope``
SDK's ``Application.call`` runs against the same server.

Embeddings come from ``HashEmbeddingEngine`` (bag of words), so which chunk is retrieved is
known in advance; ``RecordingEngine`` keeps every prompt it was given.
"""

from __future__ import annotations

import json
import re
from typing import Any

import dashscope
import httpx
import pytest

from modelgrid.core.types import InferenceRequest
from modelgrid.engines.base import PreparedRequest
from modelgrid.engines.fake import FakeEngine
from modelgrid.serving.apps import CITE
from tests.conftest import ServerFactory
from tests.databases import BOTH_DATABASES
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.knowledge.test_api_fake import GUIDE, make_kb, upload, wait_ready
from tests.support import ThreadServer, create_key, db_rows, usage_rows_matching

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the index

REPLY = "A refund is granted within fourteen days [1]."
HEX32 = re.compile(r"^[0-9a-f]{32}$")


class RecordingEngine(FakeEngine):
    """The scripted engine, keeping each request's messages as (role, content)."""

    def __init__(self) -> None:
        super().__init__(reply=REPLY, context_length=4096)
        self.prompts: list[list[tuple[str, str]]] = []

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        self.prompts.append([(m.role, m.content or "") for m in request.messages or []])
        return super().prepare(request)


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


@pytest.fixture
def server(server_factory: ServerFactory, engine: RecordingEngine) -> ThreadServer:
    return server_factory(
        engine,
        HashEmbeddingEngine(),
        knowledge={"poll_interval_s": 0.05, "chunk_tokens": 40, "chunk_overlap": 10},
    )


def call(
    s: ThreadServer, method: str, path: str, key: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or s.api_key}", **kw.pop("headers", {})}
    return httpx.request(method, f"{s.base_url}{path}", headers=headers, timeout=30, **kw)


def ready_kb(s: ThreadServer, key: str | None = None) -> str:
    kb = make_kb(s, key)
    doc = upload(s, kb["id"], GUIDE, key=key).json()
    assert wait_ready(s, kb["id"], doc["id"], key)["status"] == "ready"
    return str(kb["id"])


def make_app(s: ThreadServer, key: str | None = None, **body: Any) -> dict[str, Any]:
    payload = {
        "name": "helpdesk",
        "model": "fake-model",
        "instructions": "You are the shop's helpdesk.",
        **body,
    }
    r = call(s, "POST", "/v1/apps", key, json=payload)
    assert r.status_code == 200, r.text
    return dict(r.json())


def complete(
    s: ThreadServer, app_id: str, body: dict[str, Any], key: str | None = None, **kw: Any
) -> httpx.Response:
    return call(s, "POST", f"/api/v1/apps/{app_id}/completion", key, json=body, **kw)


@SQLITE
def test_a_knowledge_base_an_app_uses_cannot_be_deleted(server: ThreadServer) -> None:
    kb = make_kb(server)["id"]
    app = make_app(server, knowledge_base_ids=[kb])
    r = call(server, "DELETE", f"/v1/knowledge_bases/{kb}")
    assert r.status_code == 409
    assert r.json()["error"]["message"] == (
        f"The knowledge base {kb} is used by the app(s) {app['id']}: remove it from them first."
    )
    assert call(server, "GET", f"/v1/knowledge_bases/{kb}").status_code == 200  # still there
    assert call(server, "DELETE", f"/v1/apps/{app['id']}").status_code == 200
    assert call(server, "DELETE", f"/v1/knowledge_bases/{kb}").status_code == 200


@SQLITE
def test_manage_apps(server: ThreadServer) -> None:
    kb = ready_kb(server)
    app = make_app(server, knowledge_base_ids=[kb, kb], retrieval={"top_k": 2, "mode": "lexical"})
    assert app["object"] == "app" and app["id"].startswith("app-")
    assert (app["model"], app["knowledge_base_ids"], app["retrieval"]) == (
        "fake-model",
        [kb],
        {"top_k": 2, "mode": "lexical", "query_rewrite": "concat", "rerank": False},
    )
    assert app["max_tokens"] is None
    assert call(server, "GET", f"/v1/apps/{app['id']}").json() == app
    changed = call(
        server,
        "POST",
        f"/v1/apps/{app['id']}",
        json={"instructions": "Be brief.", "max_tokens": 64},
    )
    assert changed.status_code == 200, changed.text
    assert (
        changed.json()["instructions"],
        changed.json()["max_tokens"],
        changed.json()["name"],
    ) == ("Be brief.", 64, "helpdesk")
    listed = call(server, "GET", "/v1/apps").json()
    assert [a["id"] for a in listed["data"]] == [app["id"]] and listed["has_more"] is False

    # bad input: 400s naming what is wrong
    r = call(server, "POST", "/v1/apps", json={"name": "x", "model": "nope"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "unknown_model")
    for method, path in (("POST", "/v1/apps"), ("POST", f"/v1/apps/{app['id']}")):
        r = call(server, method, path, json={"name": "x", "model": "hash-embedding"})
        assert (r.status_code, r.json()["error"]["param"]) == (400, "model"), path
        assert r.json()["error"]["code"] == "model_not_chat"
        assert "'hash-embedding' is an embedding model" in r.json()["error"]["message"]
    assert call(server, "GET", f"/v1/apps/{app['id']}").json()["model"] == "fake-model"
    r = call(
        server,
        "POST",
        "/v1/apps",
        json={"name": "x", "model": "fake-model", "knowledge_base_ids": ["kb-a", kb, "kb-b"]},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "knowledge_base_not_found")
    assert "'kb-a', 'kb-b'" in r.json()["error"]["message"]
    r = call(
        server,
        "POST",
        "/v1/apps",
        json={"name": "x", "model": "fake-model", "retrieval": {"top_k": 0}},
    )
    assert r.status_code == 400
    r = call(server, "POST", "/v1/apps", json={"name": "x", "model": "fake-model", "colour": "red"})
    assert r.status_code == 400

    # another workspace sees nothing and can change nothing: the same 404 as an unknown id
    other = create_key(server.settings.database_url, name="other", workspace="acme").plaintext
    assert call(server, "GET", "/v1/apps", other).json()["data"] == []
    for method, body in (("GET", None), ("POST", {"name": "mine"}), ("DELETE", None)):
        r = call(server, method, f"/v1/apps/{app['id']}", other, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "app_not_found"), method
    # nor may it point its own app at this workspace's knowledge base
    r = call(
        server,
        "POST",
        "/v1/apps",
        other,
        json={"name": "x", "model": "fake-model", "knowledge_base_ids": [kb]},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "knowledge_base_not_found")

    # the admin API manages any workspace's apps; a tenant key may not
    admin = create_key(server.settings.database_url, role="admin", workspace="admin").plaintext
    r = call(server, "GET", "/admin/v1/workspaces/default/apps", admin)
    assert [a["id"] for a in r.json()["data"]] == [app["id"]]
    r = call(
        server,
        "POST",
        "/admin/v1/workspaces/acme/apps",
        admin,
        json={"name": "acme bot", "model": "fake-model"},
    )
    assert r.status_code == 200, r.text
    assert [a["name"] for a in call(server, "GET", "/v1/apps", other).json()["data"]] == [
        "acme bot"
    ]
    r = call(
        server,
        "POST",
        f"/admin/v1/workspaces/acme/apps/{r.json()['id']}",
        admin,
        json={"retrieval": {"query_rewrite": "model"}, "memory_extraction": "model"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["retrieval"], r.json()["memory_extraction"]) == (
        {"top_k": 5, "mode": "hybrid", "query_rewrite": "model", "rerank": False},
        "model",
    )
    assert call(server, "GET", "/admin/v1/workspaces/default/apps").status_code == 403

    # deleting an app deletes its sessions and their turns
    assert complete(server, app["id"], {"input": {"prompt": "refund?"}}).status_code == 200
    gone = call(server, "DELETE", f"/v1/apps/{app['id']}")
    assert gone.json() == {"id": app["id"], "object": "app.deleted", "deleted": True, "sessions": 1}
    assert db_rows(server, "SELECT count(*) AS n FROM app_turns")[0]["n"] == 0
    assert call(server, "GET", f"/v1/apps/{app['id']}").status_code == 404
    actions = [
        r["action"]
        for r in db_rows(
            server, "SELECT action FROM audit_log WHERE action LIKE 'app.%' ORDER BY id"
        )
    ]
    assert actions == ["app.create", "app.update", "app.create", "app.update", "app.delete"]


@SQLITE
def test_completion_json_with_references(server: ThreadServer, engine: RecordingEngine) -> None:
    kb = ready_kb(server)
    app = make_app(server, knowledge_base_ids=[kb], retrieval={"top_k": 2, "mode": "hybrid"})
    r = complete(
        server,
        app["id"],
        {
            "input": {"prompt": "When is a refund granted?", "doc_reference_type": "indexed"},
            "parameters": {"has_thoughts": True},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"output", "usage", "request_id"}
    out = body["output"]
    assert (out["text"], out["finish_reason"]) == (REPLY, "stop")
    assert HEX32.match(out["session_id"])
    # the answer cites [1] only: the one reference
    [ref] = out["doc_references"]
    assert (ref["index_id"], ref["doc_name"], ref["title"], ref["knowledge_base_id"]) == (
        "1",
        "guide.md",
        "Refunds",
        kb,
    )
    assert ref["text"].startswith("A refund is granted within fourteen days")
    assert out["thoughts"][0]["action_name"] == "knowledge_retrieval"
    assert out["thoughts"][0]["action_input"]["query"] == "When is a refund granted?"
    # the prompt: the instructions, then the numbered passages, the request to cite them and
    # the question
    passages = json.loads(out["thoughts"][0]["observation"])
    assert [p["index_id"] for p in passages] == ["1", "2"]
    assert engine.prompts[-1] == [
        ("system", "You are the shop's helpdesk."),
        (
            "user",
            f"[1] {passages[0]['text']}\n\n[2] {passages[1]['text']}\n\n{CITE}\n\n"
            "Question: When is a refund granted?",
        ),
    ]
    # usage per model, equal to the ledger's record of the call
    [model] = body["usage"]["models"]
    assert (model["model_id"], model["output_tokens"]) == ("fake-model", len(REPLY.split()))
    [rec] = usage_rows_matching(server, endpoint="dashscope.apps")
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["status"]) == (
        model["input_tokens"],
        model["output_tokens"],
        200,
    )
    assert rec["request_id"] == body["request_id"]
    # the query's embedding was metered to the caller too
    assert usage_rows_matching(server, endpoint="embeddings", api_key_id=rec["api_key_id"])


@SQLITE
def test_simple_references_are_every_passage(server: ThreadServer, engine: RecordingEngine) -> None:
    kb = ready_kb(server)
    app = make_app(server, knowledge_base_ids=[kb], retrieval={"top_k": 2, "mode": "hybrid"})
    out = complete(server, app["id"], {"input": {"prompt": "When is a refund granted?"}}).json()
    refs = out["output"]["doc_references"]
    assert (refs[0]["index_id"], refs[0]["title"]) == ("1", "Refunds")
    assert len(refs) == 2  # "simple": every passage given, cited or not
    assert engine.prompts[-1][1] == (
        "user",
        f"Use this information:\n\n{refs[0]['text']}\n\n{refs[1]['text']}\n\n"
        "Question: When is a refund granted?",
    )
    # file_ids keeps only those documents' chunks
    [doc] = call(server, "GET", f"/v1/knowledge_bases/{kb}/documents").json()["data"]
    out = complete(
        server,
        app["id"],
        {"input": {"prompt": "refund?"}, "parameters": {"rag_options": {"file_ids": [doc["id"]]}}},
    ).json()
    assert {r["doc_id"] for r in out["output"]["doc_references"]} == {doc["id"]}


RETURNS = b"""# Returns

A refund for a parcel lost in shipping is paid within ten days of the claim.
"""


@SQLITE
def test_metadata_filter_and_tags_keep_matching_documents(
    server_factory: ServerFactory, engine: RecordingEngine
) -> None:
    """``rag_options.metadata_filter`` keeps the documents whose metadata has every key with an
    equal value, ``tags`` those carrying every tag; with ``file_ids`` the intersection; a
    filter that leaves nothing searches nothing and answers without passages."""
    emb = HashEmbeddingEngine()
    s = server_factory(
        engine, emb, knowledge={"poll_interval_s": 0.05, "chunk_tokens": 40, "chunk_overlap": 10}
    )
    kb = make_kb(s)["id"]
    guide = upload(
        s, kb, GUIDE, metadata='{"team": "billing", "year": 2026}', tags='["faq", "en"]'
    ).json()
    returns = upload(
        s,
        kb,
        RETURNS,
        "returns.md",
        metadata='{"team": "shipping", "year": 2025, "draft": true}',
        tags='["en"]',
    ).json()
    for doc in (guide, returns):
        assert wait_ready(s, kb, doc["id"])["status"] == "ready"
    # another workspace's document with the same metadata and tags, in its own knowledge base
    other = create_key(s.settings.database_url, name="other", workspace="acme").plaintext
    other_kb = make_kb(s, other)["id"]
    foreign = upload(
        s, other_kb, GUIDE, key=other, metadata='{"team": "billing"}', tags='["faq", "en"]'
    ).json()
    assert wait_ready(s, other_kb, foreign["id"], other)["status"] == "ready"
    app = make_app(s, knowledge_base_ids=[kb], retrieval={"top_k": 4, "mode": "hybrid"})
    g, r = guide["id"], returns["id"]

    def doc_ids(rag: dict[str, Any], key: str | None = None, app_id: str = app["id"]) -> list[str]:
        body = {"input": {"prompt": "When is a refund paid?"}, "parameters": {"rag_options": rag}}
        resp = complete(s, app_id, body, key)
        assert resp.status_code == 200, (rag, resp.text)
        return sorted({ref["doc_id"] for ref in resp.json()["output"]["doc_references"]})

    both = sorted([g, r])
    assert doc_ids({}) == both  # unfiltered, both documents' chunks are among the best four
    assert doc_ids({"metadata_filter": {"team": "billing"}}) == [g]
    assert doc_ids({"metadata_filter": {"team": "shipping", "year": 2025}}) == [r]
    assert doc_ids({"metadata_filter": {"year": 2026.0}}) == [g]  # 2026 == 2026.0
    assert doc_ids({"metadata_filter": {"draft": True}}) == [r]
    assert doc_ids({"tags": ["faq"]}) == [g]
    assert doc_ids({"tags": ["en"]}) == both
    assert doc_ids({"tags": ["en", "faq"]}) == [g]  # every tag listed
    assert doc_ids({"metadata_filter": {}, "tags": []}) == both  # empty: not given
    assert doc_ids({"metadata_filter": {"team": "billing"}, "tags": ["en"]}) == [g]
    assert doc_ids({"file_ids": [r], "tags": ["en"]}) == [r]
    assert doc_ids({"file_ids": [g, r], "metadata_filter": {"year": 2025}}) == [r]
    # the other workspace's app finds only its own document with the same filter
    other_app = make_app(s, other, knowledge_base_ids=[other_kb])
    assert doc_ids({"metadata_filter": {"team": "billing"}}, other, other_app["id"]) == [
        foreign["id"]
    ]
    # filters that leave no document: no error, nothing embedded, the answer has no passages
    batches = len(emb.batches)
    for rag in (
        {"metadata_filter": {"team": "billing", "year": 2025}},
        {"metadata_filter": {"draft": 1}},  # a boolean equals only a boolean
        {"metadata_filter": {"missing": "x"}},
        {"tags": ["en", "nope"]},
        {"file_ids": [g], "metadata_filter": {"team": "shipping"}},
    ):
        body = {"input": {"prompt": "When is a refund paid?"}, "parameters": {"rag_options": rag}}
        resp = complete(s, app["id"], body)
        assert resp.status_code == 200, (rag, resp.text)
        assert resp.json()["output"]["doc_references"] == [], rag
        assert engine.prompts[-1][-1] == (
            "user",
            "(The knowledge base has nothing on this.)\n\nQuestion: When is a refund paid?",
        )
    assert len(emb.batches) == batches


@SQLITE
def test_empty_pipeline_ids_search_the_apps_knowledge_bases(server: ThreadServer) -> None:
    kb = ready_kb(server)
    app = make_app(server, knowledge_base_ids=[kb], retrieval={"top_k": 2, "mode": "hybrid"})
    prompt = {"prompt": "When is a refund granted?"}
    given = {"input": prompt, "parameters": {"rag_options": {"pipeline_ids": [kb]}}}
    expected = complete(server, app["id"], given).json()["output"]["doc_references"]
    assert len(expected) == 2
    for rag in ({"pipeline_ids": []}, {}):
        r = complete(server, app["id"], {"input": prompt, "parameters": {"rag_options": rag}})
        assert r.status_code == 200, r.text
        assert r.json()["output"]["doc_references"] == expected, rag


def sse_events(raw: bytes) -> list[tuple[str, str, str, dict[str, Any]]]:
    out = []
    for frame in raw.split(b"\n\n"):
        if not frame:
            continue
        ident, event, status, data = frame.decode().split("\n")
        out.append((ident, event, status, json.loads(data.removeprefix("data:"))))
    return out


@BOTH_DATABASES
def test_sse_frames_exact_bytes(server: ThreadServer) -> None:
    app = make_app(server)
    r = complete(
        server,
        app["id"],
        {"input": {"prompt": "hi"}, "parameters": {"incremental_output": True}},
        headers={"X-DashScope-SSE": "enable"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    first = sse_events(r.content)[0][3]
    rid, sid = first["request_id"], first["output"]["session_id"]
    words = REPLY.split(" ")
    expected = b""
    for i, word in enumerate(words, start=1):
        piece = word if i == 1 else " " + word
        data = {
            "output": {"text": piece, "finish_reason": "null", "session_id": sid},
            "usage": {
                "models": [
                    {
                        "model_id": "fake-model",
                        "input_tokens": first["usage"]["models"][0]["input_tokens"],
                        "output_tokens": i,
                    }
                ]
            },
            "request_id": rid,
        }
        expected += (
            f"id:{i}\nevent:result\n:HTTP_STATUS/200\ndata:".encode()
            + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
            + b"\n\n"
        )
    n = len(words)
    last = {
        "output": {"text": "", "finish_reason": "stop", "session_id": sid, "doc_references": []},
        "usage": {
            "models": [
                {
                    "model_id": "fake-model",
                    "input_tokens": first["usage"]["models"][0]["input_tokens"],
                    "output_tokens": n,
                }
            ]
        },
        "request_id": rid,
    }
    expected += (
        f"id:{n + 1}\nevent:result\n:HTTP_STATUS/200\ndata:".encode()
        + json.dumps(last, ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n\n"
    )
    assert r.content == expected
    # not incremental: each event carries the text so far
    r = complete(
        server,
        app["id"],
        {"input": {"prompt": "hi", "session_id": sid}},
        headers={"X-DashScope-SSE": "enable"},
    )
    texts = [e[3]["output"]["text"] for e in sse_events(r.content)]
    assert texts[-1] == texts[-2] == REPLY and texts[0] == "A"


@SQLITE
def test_session_over_three_turns(server: ThreadServer, engine: RecordingEngine) -> None:
    kb = ready_kb(server)
    app = make_app(server, knowledge_base_ids=[kb], retrieval={"top_k": 1, "mode": "lexical"})
    first = complete(server, app["id"], {"input": {"prompt": "Tell me about refunds."}}).json()
    sid = first["output"]["session_id"]
    complete(server, app["id"], {"input": {"prompt": "How many days?", "session_id": sid}})
    third = complete(
        server, app["id"], {"input": {"prompt": "And shipping?", "session_id": sid}}
    ).json()
    assert third["output"]["session_id"] == sid
    # the third prompt carries both earlier turns, oldest first
    assert engine.prompts[-1][1:-1] == [
        ("user", "Tell me about refunds."),
        ("assistant", REPLY),
        ("user", "How many days?"),
        ("assistant", REPLY),
    ]
    role, content = engine.prompts[-1][-1]
    assert role == "user" and content.endswith("\n\nQuestion: And shipping?")
    # the retrieval query was rewritten from the conversation: lexical search found the
    # shipping chunk through the new turn
    thoughts = complete(
        server,
        app["id"],
        {
            "input": {"prompt": "When does a parcel arrive?", "session_id": sid},
            "parameters": {"has_thoughts": True},
        },
    ).json()["output"]["thoughts"]
    assert (
        thoughts[0]["action_input"]["query"]
        == "How many days?\nAnd shipping?\nWhen does a parcel arrive?"
    )
    assert [p["title"] for p in json.loads(thoughts[0]["observation"])] == ["Shipping"]
    turns = db_rows(
        server, "SELECT user_text FROM app_turns WHERE session_id = :s ORDER BY id", s=sid
    )
    assert [t["user_text"] for t in turns] == [
        "Tell me about refunds.",
        "How many days?",
        "And shipping?",
        "When does a parcel arrive?",
    ]
    # messages replace the session's history
    r = complete(
        server,
        app["id"],
        {"input": {"session_id": sid, "messages": [{"role": "user", "content": "Only this."}]}},
    )
    assert r.status_code == 200
    assert engine.prompts[-1][1:] == [
        ("user", "(The knowledge base has nothing on this.)\n\nQuestion: Only this.")
    ]


@SQLITE
def test_errors_in_dashscope_shape(server: ThreadServer, engine: RecordingEngine) -> None:
    kb = ready_kb(server)
    app = make_app(server, knowledge_base_ids=[kb])
    other = create_key(server.settings.database_url, name="other", workspace="acme").plaintext
    other_app = make_app(server, other)
    other_kb = ready_kb(server, other)
    [foreign] = call(server, "GET", f"/v1/knowledge_bases/{other_kb}/documents", other).json()[
        "data"
    ]
    sid = complete(server, other_app["id"], {"input": {"prompt": "hi"}}, other).json()["output"][
        "session_id"
    ]

    def err(r: httpx.Response) -> tuple[int, str]:
        body = r.json()
        assert set(body) == {"request_id", "code", "message"}, body
        return r.status_code, body["code"]

    cases: list[tuple[str, dict[str, Any], tuple[int, str], str]] = [
        (other_app["id"], {"input": {"prompt": "hi"}}, (404, "AppNotFound"), other_app["id"]),
        ("app-missing", {"input": {"prompt": "hi"}}, (404, "AppNotFound"), "app-missing"),
        (app["id"], {"input": {"prompt": "hi", "session_id": sid}}, (404, "SessionNotFound"), sid),
        (
            app["id"],
            {"input": {"prompt": "hi", "session_id": "nope"}},
            (404, "SessionNotFound"),
            "nope",
        ),
        (
            app["id"],
            {
                "input": {"prompt": "hi"},
                "parameters": {"rag_options": {"pipeline_ids": ["kb-x", kb, "kb-y"]}},
            },
            (400, "InvalidParameter"),
            "'kb-x', 'kb-y'",
        ),
        (  # an unknown document and another workspace's: the same answer
            app["id"],
            {
                "input": {"prompt": "hi"},
                "parameters": {"rag_options": {"file_ids": ["doc-x", foreign["id"], "doc-x"]}},
            },
            (400, "InvalidParameter"),
            f"Unknown file ids 'doc-x', '{foreign['id']}': no document of the knowledge bases",
        ),
        (
            app["id"],
            {"input": {"prompt": "hi", "memory_id": "not a memory id"}},
            (400, "InvalidParameter"),
            "memory id",
        ),
        *(
            (
                app["id"],
                {"input": {"prompt": "hi"}, "parameters": {"rag_options": rag}},
                (400, "InvalidParameter"),
                named,
            )
            for rag, named in (
                (
                    {"metadata_filter": "team=billing"},
                    "'parameters.rag_options.metadata_filter' must be an object.",
                ),
                (
                    {"metadata_filter": {"team": ["a", "b"]}},
                    "'parameters.rag_options.metadata_filter.team' must be a string, number",
                ),
                (
                    {"metadata_filter": {f"k{i}": i for i in range(17)}},
                    "'parameters.rag_options.metadata_filter' has 17 keys; at most 16.",
                ),
                (
                    {"tags": "faq"},
                    "'parameters.rag_options.tags' must be an array of strings.",
                ),
                (
                    {"tags": ["faq", 1]},
                    "'parameters.rag_options.tags[1]' must be a string of 1..64 characters.",
                ),
                (
                    {"tags": ["a\x1bb"]},
                    "'parameters.rag_options.tags[0]' must not contain control characters",
                ),
            )
        ),
        (app["id"], {"input": {}}, (400, "InvalidParameter"), "input"),
        (
            app["id"],
            {"input": {"messages": [{"role": "assistant", "content": "x"}]}},
            (400, "InvalidParameter"),
            "user message",
        ),
        (
            app["id"],
            {"input": {"prompt": "hi"}, "parameters": {"incremental_output": "yes"}},
            (400, "InvalidParameter"),
            "incremental_output",
        ),
    ]
    prompts = len(engine.prompts)
    for app_id, body, expected, named in cases:
        for headers in ({}, {"X-DashScope-SSE": "enable"}):
            r = complete(server, app_id, body, headers=headers)
            assert err(r) == expected, (body, r.text)
            assert named in r.json()["message"], (body, r.text)
    assert len(engine.prompts) == prompts  # nothing reached the model
    # another workspace's session id was not touched
    assert len(db_rows(server, "SELECT id FROM app_turns WHERE session_id = :s", s=sid)) == 1


@SQLITE
def test_retrieval_failure_is_an_error(
    server_factory: ServerFactory, engine: RecordingEngine
) -> None:
    embedder = HashEmbeddingEngine()
    s = server_factory(
        engine,
        embedder,
        knowledge={"poll_interval_s": 0.05, "chunk_tokens": 40, "chunk_overlap": 10},
    )
    kb = ready_kb(s)
    app = make_app(s, knowledge_base_ids=[kb])
    embedder.fail = True
    r = complete(s, app["id"], {"input": {"prompt": "refund?"}})
    # (the only embedding replica failed: the router has none to fail over to)
    assert (r.status_code, r.json()["code"]) == (503, "ModelUnavailable"), r.text
    assert not engine.prompts or engine.prompts[-1][-1] != ("user", "refund?")


@SQLITE
def test_official_sdk(server: ThreadServer, monkeypatch: pytest.MonkeyPatch) -> None:
    kb = ready_kb(server)
    app = make_app(server, knowledge_base_ids=[kb])
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{server.base_url}/api/v1")
    r = dashscope.Application.call(
        app_id=app["id"], prompt="When is a refund granted?", api_key=server.api_key
    )
    assert r.status_code == 200, r
    assert r.output.text == REPLY and r.output.finish_reason == "stop"
    assert r.output.doc_references[0].doc_name == "guide.md"
    assert r.usage.models[0].model_id == "fake-model"
    sid = r.output.session_id
    chunks = list(
        dashscope.Application.call(
            app_id=app["id"],
            prompt="How many days?",
            session_id=sid,
            rag_options={"pipeline_ids": [kb]},
            stream=True,
            incremental_output=True,
            api_key=server.api_key,
        )
    )
    assert all(c.status_code == 200 for c in chunks)
    assert "".join(c.output.text for c in chunks) == REPLY
    assert chunks[-1].output.finish_reason == "stop" and chunks[-1].output.session_id == sid
    bad = dashscope.Application.call(app_id="app-nope", prompt="x", api_key=server.api_key)
    assert (bad.status_code, bad.code) == (404, "AppNotFound")


@BOTH_DATABASES
def test_long_term_memory(server: ThreadServer, engine: RecordingEngine) -> None:
    app = make_app(server)
    said = "My name is Ana. I live in Lyon. When do you ship?"
    r = complete(server, app["id"], {"input": {"prompt": said, "memory_id": "user-42"}})
    assert r.status_code == 200, r.text
    assert engine.prompts[-1][0] == ("system", "You are the shop's helpdesk.")  # nothing yet
    memory = call(server, "GET", "/v1/memories/user-42").json()
    assert memory["object"] == "memory" and memory["id"] == "user-42"
    assert [f["fact"] for f in memory["facts"]] == ["My name is Ana.", "I live in Lyon."]
    # recalled in a later call of another session (streamed here), not in one without it
    r = complete(
        server,
        app["id"],
        {"input": {"prompt": "Where do I live?", "memory_id": "user-42"}},
        headers={"X-DashScope-SSE": "enable"},
    )
    assert r.status_code == 200
    recalled = (
        "You are the shop's helpdesk.\n\nWhat the user told you in earlier conversations:\n"
        "- My name is Ana.\n- I live in Lyon."
    )
    assert engine.prompts[-1] == [("system", recalled), ("user", "Where do I live?")]
    complete(server, app["id"], {"input": {"prompt": "Where do I live?"}})
    assert engine.prompts[-1][0] == ("system", "You are the shop's helpdesk.")

    # another workspace cannot see, add to or delete it
    other = create_key(server.settings.database_url, name="other", workspace="acme").plaintext
    for method, path in (
        ("GET", "/v1/memories/user-42"),
        ("DELETE", "/v1/memories/user-42"),
        ("DELETE", f"/v1/memories/user-42/facts/{memory['facts'][0]['id']}"),
    ):
        r = call(server, method, path, other)
        assert r.status_code == 404 and r.json()["error"]["code"].startswith("memory_"), path
    # the end user's tenant lists, adds and deletes facts
    added = call(server, "POST", "/v1/memories/user-42/facts", json={"fact": "Prefers email."})
    assert [f["fact"] for f in added.json()["facts"]][-1] == "Prefers email."
    first = memory["facts"][0]["id"]
    gone = call(server, "DELETE", f"/v1/memories/user-42/facts/{first}").json()
    assert gone == {"id": "user-42", "object": "memory.fact.deleted", "deleted": True, "facts": 1}
    facts = call(server, "GET", "/v1/memories/user-42").json()["facts"]
    assert [f["fact"] for f in facts] == ["I live in Lyon.", "Prefers email."]
    for bad in ("99999999999999999999999", "-5", "0"):  # no row has it: 404, not a 500
        r = call(server, "DELETE", f"/v1/memories/user-42/facts/{bad}")
        assert (r.status_code, r.json()["error"]["code"]) == (404, "memory_fact_not_found")
    gone = call(server, "DELETE", "/v1/memories/user-42").json()
    assert gone == {"id": "user-42", "object": "memory.deleted", "deleted": True, "facts": 2}
    assert call(server, "GET", "/v1/memories/user-42").status_code == 404
    complete(server, app["id"], {"input": {"prompt": "Where do I live?", "memory_id": "user-42"}})
    assert engine.prompts[-1][0] == ("system", "You are the shop's helpdesk.")
    r = call(server, "GET", "/v1/memories/bad%20id")
    assert r.status_code == 400


@BOTH_DATABASES
def test_sessions_can_be_read_and_deleted(server: ThreadServer) -> None:
    app = make_app(server)
    sid = complete(server, app["id"], {"input": {"prompt": "First."}}).json()["output"][
        "session_id"
    ]
    complete(server, app["id"], {"input": {"prompt": "Second.", "session_id": sid}})
    got = call(server, "GET", f"/v1/apps/{app['id']}/sessions/{sid}").json()
    assert (got["object"], got["id"], got["app_id"]) == ("app.session", sid, app["id"])
    assert [(t["user"], t["assistant"]) for t in got["turns"]] == [
        ("First.", REPLY),
        ("Second.", REPLY),
    ]
    other = create_key(server.settings.database_url, name="other", workspace="acme").plaintext
    for method in ("GET", "DELETE"):
        r = call(server, method, f"/v1/apps/{app['id']}/sessions/{sid}", other)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "app_not_found")
    gone = call(server, "DELETE", f"/v1/apps/{app['id']}/sessions/{sid}").json()
    assert gone == {"id": sid, "object": "app.session.deleted", "deleted": True, "turns": 2}
    r = call(server, "GET", f"/v1/apps/{app['id']}/sessions/{sid}")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "session_not_found")
    r = complete(server, app["id"], {"input": {"prompt": "Third.", "session_id": sid}})
    assert (r.status_code, r.json()["code"]) == (404, "SessionNotFound")


@BOTH_DATABASES
def test_a_failure_mid_stream_is_an_error_event_and_stores_no_turn(
    server_factory: ServerFactory,
) -> None:
    engine = FakeEngine(reply=REPLY, context_length=4096, fail_after_tokens=2)
    s = server_factory(engine)
    app = make_app(s)
    r = complete(
        s,
        app["id"],
        {"input": {"prompt": "hi"}, "parameters": {"incremental_output": True}},
        headers={"X-DashScope-SSE": "enable"},
    )
    assert r.status_code == 200
    events = sse_events(r.content)
    assert [(e[1], e[2]) for e in events] == [
        ("event:result", ":HTTP_STATUS/200"),
        ("event:result", ":HTTP_STATUS/200"),
        ("event:error", ":HTTP_STATUS/500"),
    ]
    error = events[-1][3]
    assert error == {
        "request_id": events[0][3]["request_id"],
        "code": "InternalError",
        "message": "The fake engine failed on purpose.",
    }
    assert db_rows(s, "SELECT count(*) AS n FROM app_turns")[0]["n"] == 0
