"""Re-ranking a vector store search (``ranking_options.ranker``) over a real uvicorn server:
the served chat model judges each candidate (``serving.rerank``), the hits are re-ordered by
its P(yes), which becomes their score, and each judgement is one usage record billed to the
caller. The judge is a scripted ``FakeEngine``; embeddings come from ``HashEmbeddingEngine``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import pytest

from modelgrid.core.types import InferenceRequest
from modelgrid.engines.base import PreparedRequest
from modelgrid.engines.fake import FakeEngine
from tests.conftest import ServerFactory
from tests.knowledge.hash_embedding import HashEmbeddingEngine
from tests.support import ThreadServer, usage_rows

GUIDE = b"# Refunds\n\nA refund is granted within fourteen days of purchase when unopened.\n"
SHIPPING = b"Parcels leave the warehouse in Rotterdam every weekday and arrive within three days."
# the fake's first token at -0.5, its alternatives alt1..alt19 down to -19.5: the other word
YES = round(1 / (1 + math.exp(-19.5 + 0.5)), 6)
NO = round(1 / (1 + math.exp(-0.5 + 19.5)), 6)


class Judge(FakeEngine):
    """Says "yes" to a document about refunds, "no" to any other."""

    def __init__(self) -> None:
        super().__init__(reply="no", context_length=4096)

    def prepare(self, request: InferenceRequest) -> PreparedRequest:
        document = (request.messages or [])[-1].content or ""
        self.reply = "yes" if "refund" in document.split("<Document>:")[-1].lower() else "no"
        return super().prepare(request)


@pytest.fixture
def server(server_factory: ServerFactory) -> ThreadServer:
    return server_factory(Judge(), HashEmbeddingEngine(), knowledge={"poll_interval_s": 0.05})


def api(s: ThreadServer, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {s.api_key}"}
    return httpx.request(method, f"{s.base_url}{path}", headers=headers, timeout=30, **kw)


def test_ranker_reorders_by_the_models_judgement(server: ThreadServer) -> None:
    ids = []
    for name, data in (("refunds.md", GUIDE), ("shipping.txt", SHIPPING)):
        r = api(server, "POST", "/v1/files", files={"file": (name, data)},
                data={"purpose": "assistants"})  # fmt: skip
        ids.append(r.json()["id"])
    vs = api(server, "POST", "/v1/vector_stores", json={"name": "care", "file_ids": ids}).json()
    deadline = time.monotonic() + 20
    while api(server, "GET", f"/v1/vector_stores/{vs['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    before = len(usage_rows(server, expect=2))  # the two files' indexing

    def search(ranking: dict[str, Any] | None) -> list[tuple[str, float]]:
        body: dict[str, Any] = {"query": "Where do parcels leave from?"}
        if ranking is not None:
            body["ranking_options"] = ranking
        r = api(server, "POST", f"/v1/vector_stores/{vs['id']}/search", json=body)
        assert r.status_code == 200, r.text
        return [(d["filename"], d["score"]) for d in r.json()["data"]]

    # fused: shipping first in both retrievers; refunds last by vector, absent from BM25
    assert search(None) == [("shipping.txt", 1.0), ("refunds.md", 0.0)]
    assert search({"ranker": "none"}) == [("shipping.txt", 1.0), ("refunds.md", 0.0)]
    rows = usage_rows(server, expect=before + 2)
    assert [u["endpoint"] for u in rows[before:]] == ["embeddings", "embeddings"]
    # re-ranked: the judge prefers the refunds chunk; its P(yes) is the score
    assert search({"ranker": "auto"}) == [("refunds.md", YES), ("shipping.txt", NO)]
    assert search({"ranker": "default-2024-11-15", "score_threshold": 0.5}) == [("refunds.md", YES)]
    rows = usage_rows(server, expect=before + 8)[before + 2 :]
    # per search: the query's embedding, then one judgement per candidate chunk
    assert [(u["endpoint"], u["model"]) for u in rows] == [
        ("embeddings", "hash-embedding"),
        ("rerank", "fake-model"),
        ("rerank", "fake-model"),
    ] * 2
    assert all(u["completion_tokens"] == 1 and u["status"] == 200 for u in rows[1::3])
    # an unknown ranker is OpenAI's 400 naming the field
    r = api(server, "POST", f"/v1/vector_stores/{vs['id']}/search",
            json={"query": "x", "ranking_options": {"ranker": "cohere"}})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "ranking_options.ranker"
