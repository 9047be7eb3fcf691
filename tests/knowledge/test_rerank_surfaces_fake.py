"""Opt-in re-ranking beyond vector stores, over a real uvicorn server: a knowledge-base search
with ``rerank: true`` and an app with ``retrieval.rerank`` (``serving.rerank.rerank_hits``).
The judge is a scripted ``FakeEngine`` that says "yes" to the refunds passage only; the
embeddings come from ``HashEmbeddingEngine``. Retrieval alone ranks the shipping passage first
for a question about parcels; the judge puts the refunds passage first.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from modelgrid.core.types import InferenceRequest
from modelgrid.engines.base import PreparedRequest
from modelgrid.engines.fake import FakeEngine
from modelgrid.serving import rerank
from tests.api.test_apps_fake import complete, make_app
from tests.conftest import ServerFactory
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.knowledge.test_api_fake import api, make_kb, upload, wait_ready
from tests.knowledge.test_rerank_fake import GUIDE, SHIPPING
from tests.support import ThreadServer, usage_rows

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the index
QUESTION = "Where do parcels leave from?"
ANSWER = "From Rotterdam."
# the fake's first token ("yes" or "no") at -0.5, its alternatives down to -19.5: the other
# word is missing and gets that floor, so P(yes) = 1 / (1 + e^(no - yes))
YES = 1 / (1 + math.exp(-19.5 + 0.5))
NO = 1 / (1 + math.exp(-0.5 + 19.5))


class Judge(FakeEngine):
    """Judging prompts: "yes" for a document about refunds, else "no"; any other prompt (an
    app's answer): ``ANSWER``."""

    def __init__(self) -> None:
        super().__init__(reply=ANSWER, context_length=4096)

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        messages = request.messages or []
        if messages and messages[0].content == rerank.SYSTEM:
            document = (messages[-1].content or "").split("<Document>:")[-1]
            self.reply = "yes" if "refund" in document.lower() else "no"
        else:
            self.reply = ANSWER
        return super().prepare(request)


@pytest.fixture
def server(server_factory: ServerFactory) -> ThreadServer:
    return server_factory(Judge(), HashEmbeddingEngine(), knowledge={"poll_interval_s": 0.05})


def two_document_kb(s: ThreadServer) -> str:
    kb = str(make_kb(s)["id"])
    for name, data in (("refunds.md", GUIDE), ("shipping.txt", SHIPPING)):
        doc = upload(s, kb, data, name=name).json()
        assert wait_ready(s, kb, doc["id"])["status"] == "ready"
    return kb


def search(s: ThreadServer, kb: str, **body: Any) -> list[tuple[str, float, float | None]]:
    r = api(s, "POST", f"/v1/knowledge_bases/{kb}/search", json={"query": QUESTION, **body})
    assert r.status_code == 200, r.text
    return [(h["text"][:9], h["score"], h["rerank_score"]) for h in r.json()["data"]]


@SQLITE
def test_knowledge_base_search_reranks_by_the_judge(server: ThreadServer) -> None:
    kb = two_document_kb(server)
    before = len(usage_rows(server, expect=2))  # the two documents' indexing
    # retrieval alone: shipping first (in both retrievers), no re-ranking, no model call
    [(first, _, no_rerank)] = search(server, kb, top_k=1)
    assert (first, no_rerank) == ("Parcels l", None)
    assert search(server, kb, top_k=1, rerank=False)[0][0] == "Parcels l"
    rows = usage_rows(server, expect=before + 2)[before:]
    assert [u["endpoint"] for u in rows] == ["embeddings", "embeddings"]

    # re-ranked: both chunks judged (max(top_k, RERANK_CANDIDATES) candidates), the refunds
    # chunk first; its score is the judge's P(yes), also in rerank_score
    assert search(server, kb, top_k=1, rerank=True) == [("A refund ", YES, YES)]
    assert search(server, kb, top_k=2, rerank=True, mode="dense") == [
        ("A refund ", YES, YES),
        ("Parcels l", NO, NO),
    ]
    # the mode's retrieval finds the candidates: BM25 finds no word of the question in the
    # refunds chunk, so only the shipping chunk is judged
    assert search(server, kb, top_k=2, rerank=True, mode="lexical") == [("Parcels l", NO, NO)]
    rows = usage_rows(server, expect=before + 9)[before + 2 :]
    # per search: the query's embedding (none for lexical), then one judgement per chunk
    assert [(u["endpoint"], u["model"]) for u in rows] == [
        ("embeddings", "hash-embedding"),
        ("rerank", "fake-model"),
        ("rerank", "fake-model"),
        ("embeddings", "hash-embedding"),
        ("rerank", "fake-model"),
        ("rerank", "fake-model"),
        ("rerank", "fake-model"),
    ]
    judged = [u for u in rows if u["endpoint"] == "rerank"]
    assert [(u["completion_tokens"], u["status"]) for u in judged] == [(1, 200)] * 5
    assert len({u["request_id"] for u in rows}) == 7  # each judgement a request of its own

    # 'rerank' is a JSON boolean: anything else is a 400 naming it, nothing billed
    for bad in ("yes", 1, None):
        r = api(server, "POST", f"/v1/knowledge_bases/{kb}/search",
                json={"query": QUESTION, "rerank": bad})  # fmt: skip
        assert (r.status_code, r.json()["error"]["param"]) == (400, "rerank"), bad
    assert len(usage_rows(server, expect=before + 9)) == before + 9


@SQLITE
def test_rerank_without_a_chat_model_is_a_400(server_factory: ServerFactory) -> None:
    only_embeddings = server_factory(HashEmbeddingEngine(), knowledge={"poll_interval_s": 0.05})
    kb = make_kb(only_embeddings)["id"]
    r = api(only_embeddings, "POST", f"/v1/knowledge_bases/{kb}/search",
            json={"query": QUESTION, "rerank": True})  # fmt: skip
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "rerank")
    assert error["message"] == (
        "Re-ranking needs a chat model, and this gateway serves none: set 'rerank' to false."
    )
    # refused before the query was embedded: nothing billed; without rerank it searches
    r = api(only_embeddings, "POST", f"/v1/knowledge_bases/{kb}/search",
            json={"query": QUESTION})  # fmt: skip
    assert (r.status_code, r.json()["data"]) == (200, [])
    assert [u["endpoint"] for u in usage_rows(only_embeddings, expect=1)] == ["embeddings"]


@SQLITE
def test_app_with_rerank_puts_the_judged_chunk_first(server: ThreadServer) -> None:
    kb = two_document_kb(server)
    retrieval = {"top_k": 1, "mode": "hybrid"}
    plain = make_app(server, knowledge_base_ids=[kb], retrieval=retrieval)
    judged = make_app(server, knowledge_base_ids=[kb], retrieval={**retrieval, "rerank": True})
    assert (plain["retrieval"]["rerank"], judged["retrieval"]["rerank"]) == (False, True)
    body = {"input": {"prompt": QUESTION}, "parameters": {"has_thoughts": True}}

    r = complete(server, plain["id"], body)
    assert r.status_code == 200, r.text
    [ref] = r.json()["output"]["doc_references"]
    assert (ref["doc_name"], ref["text"][:9]) == ("shipping.txt", "Parcels l")

    r = complete(server, judged["id"], body)
    assert r.status_code == 200, r.text
    out = r.json()["output"]
    [ref] = out["doc_references"]
    assert (ref["doc_name"], ref["title"], ref["score"]) == ("refunds.md", "Refunds", round(YES, 6))
    assert out["thoughts"][0]["action_input"]["rerank"] is True
    assert out["text"] == ANSWER
    # both chunks judged by the app's model, each its own record billed to the caller
    rows = usage_rows(server, expect=8)  # + indexing 2, each app's embedding and answer
    judgements = [u for u in rows if u["endpoint"] == "dashscope.apps.rerank"]
    assert [(u["model"], u["completion_tokens"], u["status"]) for u in judgements] == [
        ("fake-model", 1, 200),
        ("fake-model", 1, 200),
    ]
    assert r.json()["request_id"] not in {u["request_id"] for u in judgements}
    # the answer's own usage is the answer alone
    assert [m["model_id"] for m in r.json()["usage"]["models"]] == ["fake-model"]

    # 'rerank' must be a JSON boolean in the app's settings too
    r = api(server, "POST", f"/v1/apps/{plain['id']}", json={"retrieval": {"rerank": "yes"}})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "retrieval.rerank")
