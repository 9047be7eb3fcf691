"""Searching vector stores: ``POST /v1/vector_stores/{id}/search`` and the ``file_search``
tool of the Responses API (https://platform.openai.com/docs/api-reference/vector-stores/search,
https://platform.openai.com/docs/guides/tools-file-search).

One search runs the hybrid retrieval of knowledge bases (``serving.knowledge.Retrieval``:
dense and BM25 fused as the retrieval is configured, by default ``knowledge.fusion.DEFAULT``) over each named store, within the
caller's workspace. The query is embedded once per embedding model (one metered call each,
billed to the caller like any knowledge-base search), whatever the number of stores. An
attribute filter (``protocol.openai.attribute_filters``) keeps the files whose ``attributes``
pass it; retrieval then ranks only their chunks.

Scores: OpenAI's are in 0..1. Here a hit's score is its fused score over the best possible one
(``Fusion.best_score``): the convex combination's own, ``alpha * n_dense + (1 - alpha) *
n_lexical`` with each retriever's score normalised to 0..1, so 1.0 is a chunk first in both.
``ranking_options.hybrid_search``'s ``embedding_weight`` and ``text_weight`` set ``alpha =
embedding_weight / (embedding_weight + text_weight)`` (``Fusion.with_weights``). Hits of
several stores or queries are merged by that score (a chunk found twice keeps its best).
``ranking_options.score_threshold`` drops hits below it.

``ranking_options.ranker`` (``auto``, ``default-2024-11-15``; https://platform.openai.com/docs/
api-reference/vector-stores/search) re-ranks: the best ``max(RERANK_CANDIDATES,
max_num_results)`` chunks are judged by the served chat model (``serving.rerank
.rerank_hits``: P(yes) for "does this passage answer the query", one metered request per
chunk, billed to the caller), re-ordered by it, and that probability becomes their score.
It is opt-in: absent or ``none``, no model call is made (OpenAI re-ranks by default; here
the packaged 0.5B chat model on a CPU costs over a minute a search and lowered recall@5 from
0.744 to 0.615 on held-out paraphrase questions: ``bench/RESULTS.md``). With
no chat model served, asking for it is a 400 naming the field.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy import select

from modelgrid.core.ids import new_request_id
from modelgrid.core.types import CallContext
from modelgrid.protocol.openai.attribute_filters import Filter, matches
from modelgrid.serving.knowledge import Retrieval, check_query
from modelgrid.serving.rerank import ChatReranker, candidates, require_judge, rerank_hits
from modelgrid.storage.models import KnowledgeBase, KnowledgeDocument
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import Principal


class VectorStorePort(Protocol):
    """What a search needs of the control plane's vector stores (``control.vector_stores
    .VectorStores`` implements it)."""

    async def usable(self, principal: Principal, vs_id: str, param: str) -> KnowledgeBase:
        """The store, if the caller may search it now. Raises 404 / 403 / 400 (expired)."""
        ...

    async def touch(self, rows: Sequence[KnowledgeBase]) -> None:
        """The stores were used now (``last_active_at``)."""
        ...


@dataclass(frozen=True, slots=True)
class FileHit:
    """One chunk found: its file, the file's attributes, the score (0..1) and the text."""

    vector_store_id: str
    file_id: str
    filename: str
    attributes: dict[str, Any]
    score: float
    text: str
    chunk_id: int


class FileSearch:
    """Vector-store search (see the module docstring).

    Args:
        retrieval: The knowledge bases' hybrid retrieval.
        stores: The vector stores (access, residency, expiry, activity).
        sessions: The database (the stores' files and their attributes).
        reranker: Judges passages when a search asks for re-ranking (``None``: no chat
            model to judge with).
    """

    def __init__(
        self,
        retrieval: Retrieval,
        stores: VectorStorePort,
        sessions: Sessions,
        reranker: ChatReranker | None = None,
    ) -> None:
        self.retrieval = retrieval
        self.stores = stores
        self._sessions = sessions
        self.reranker = reranker

    async def _files(self, workspace_id: str, kb_id: str) -> list[KnowledgeDocument]:
        async with self._sessions() as session:
            found = await session.execute(
                select(KnowledgeDocument).where(
                    KnowledgeDocument.workspace_id == workspace_id,
                    KnowledgeDocument.knowledge_base_id == kb_id,
                    KnowledgeDocument.status == "ready",
                )
            )
            return list(found.scalars())

    async def search(
        self,
        principal: Principal,
        vector_store_ids: Sequence[str],
        queries: Sequence[str],
        *,
        max_num_results: int = 10,
        filters: Filter | None = None,
        score_threshold: float = 0.0,
        ctx: CallContext | None = None,
        param: str = "vector_store_ids",
        weights: tuple[float, float] | None = None,
        ranker: str | None = None,
        ranker_param: str = "ranking_options.ranker",
    ) -> list[FileHit]:
        """The best ``max_num_results`` chunks of the stores for the queries, best first.
        The first embedding call is billed under ``ctx``'s request id, any further one under
        an id of its own (the ledger keeps one record per request id).

        Args:
            param: How the request names the store ids (an error's ``param``: the route's
                ``vector_store_id``, the tool's ``tools[0].vector_store_ids[1]``).
            weights: ``ranking_options.hybrid_search``'s (embedding, text) weights
                (``None``: the default fusion's).
            ranker: ``ranking_options.ranker``: ``auto`` or ``default-2024-11-15``
                re-rank (see the module docstring); ``None`` and ``none`` do not.
            ranker_param: How the request names ``ranker`` (an error's ``param``).

        Raises:
            NotFoundError: a store is unknown or another workspace's (404).
            PermissionDeniedError: a store's region is not the key's to use (403).
            InvalidRequestError: an expired store; an empty or over-long query; re-ranking
                asked for with no chat model served.
            And the errors of the query's metered embedding (``EmbeddingService.embed``)
            and of the re-ranking's generations (``ChatReranker.judge``).
        """
        judge = None
        if ranker not in (None, "none"):
            judge = require_judge(self.reranker, param=ranker_param, instead="use ranker 'none'")
        depth = candidates(max_num_results) if judge is not None else max_num_results
        stores: list[KnowledgeBase] = []
        for i, vs_id in enumerate(vector_store_ids):
            where = param if param == "vector_store_id" else f"{param}[{i}]"
            stores.append(await self.stores.usable(principal, vs_id, where))
        for query in queries:  # refused before any query is embedded (and billed)
            check_query(query)
        configured = self.retrieval.fusion
        fusion = configured if weights is None else configured.with_weights(*weights)
        best_score = fusion.best_score()
        vectors: dict[tuple[str, str], bytes] = {}
        best: dict[int, FileHit] = {}
        for store in stores:
            files = {d.id: d for d in await self._files(principal.workspace_id, store.id)}
            allowed = None
            if filters is not None:
                allowed = [d for d, doc in files.items() if matches(filters, doc.attributes)]
                if not allowed:
                    continue
            for query in queries:
                key = (store.embedding_model, query)
                if key not in vectors and query.strip():
                    # the request id is the ledger's idempotency key: one per metered call
                    own = ctx if ctx is not None and not vectors else None
                    vectors[key] = await self.retrieval.embed_query(
                        principal, store.embedding_model, query, own
                    )
                found = await self.retrieval.search(
                    principal,
                    store.id,
                    store.embedding_model,
                    query,
                    top_k=depth,
                    ctx=ctx,
                    documents=allowed,
                    query_vector=vectors.get(key),
                    fusion=fusion,
                )
                for r in found:
                    doc = files.get(r.chunk.document_id)
                    if doc is None or doc.file_id is None:
                        continue
                    score = min(1.0, r.score / best_score)
                    old = best.get(r.chunk.id)
                    if old is None or score > old.score:
                        best[r.chunk.id] = FileHit(
                            vector_store_id=store.id,
                            file_id=doc.file_id,
                            filename=doc.filename,
                            attributes=dict(doc.attributes or {}),
                            score=score,
                            text=r.chunk.text,
                            chunk_id=r.chunk.id,
                        )
        await self.stores.touch(stores)
        hits = sorted(best.values(), key=lambda h: (-h.score, h.chunk_id))[:depth]
        if judge is not None:
            own = ctx or CallContext(new_request_id(), None, time.perf_counter())
            ranked = await rerank_hits(
                judge, principal, "\n".join(queries), hits, lambda h: h.text, own
            )
            hits = [replace(h, score=p) for h, p in ranked]
        return [h for h in hits if h.score >= score_threshold][:max_num_results]


def result_object(hit: FileHit) -> dict[str, Any]:
    """A hit as ``/v1/vector_stores/{id}/search`` answers it (SDK:
    ``types/vector_store_search_response.py``)."""
    return {
        "file_id": hit.file_id,
        "filename": hit.filename,
        "score": round(hit.score, 6),
        "attributes": hit.attributes,
        "content": [{"type": "text", "text": hit.text}],
    }


__all__ = ["FileHit", "FileSearch", "VectorStorePort", "result_object"]
