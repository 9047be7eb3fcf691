"""Searching vector stores: ``POST /v1/vector_stores/{id}/search`` and the ``file_search``
tool of the Responses API (https://platform.openai.com/docs/api-reference/vector-stores/search,
https://platform.openai.com/docs/guides/tools-file-search).

One search runs the hybrid retrieval of knowledge bases (``serving.knowledge.Retrieval``:
dense and BM25 fused by reciprocal rank fusion, k = 60) over each named store, within the
caller's workspace. The query is embedded once per embedding model (one metered call each,
billed to the caller like any knowledge-base search), whatever the number of stores. An
attribute filter (``protocol.openai.attribute_filters``) keeps the files whose ``attributes``
pass it; retrieval then ranks only their chunks.

Scores: OpenAI's are in 0..1. Here a hit's score is its RRF score over the best possible one
(first in both retrievers: ``2 / (k + 1)``), so 1.0 is a chunk ranked first by both, 0.5 one
ranked first by one retriever only. Hits of several stores or queries are merged by that
score (a chunk found twice keeps its best). ``ranking_options.score_threshold`` drops hits
below it; ``ranker`` is accepted (``none``, ``auto``, ``default-2024-11-15``) and changes
nothing: no re-ranker model runs here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select

from modelgrid.core.types import CallContext
from modelgrid.knowledge.fusion import RRF_K
from modelgrid.protocol.openai.attribute_filters import Filter, matches
from modelgrid.serving.knowledge import Retrieval
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
    """

    def __init__(self, retrieval: Retrieval, stores: VectorStorePort, sessions: Sessions) -> None:
        self.retrieval = retrieval
        self.stores = stores
        self._sessions = sessions

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
        weights: tuple[float, float] = (1.0, 1.0),
    ) -> list[FileHit]:
        """The best ``max_num_results`` chunks of the stores for the queries, best first.
        The first embedding call is billed under ``ctx``'s request id, any further one under
        an id of its own (the ledger keeps one record per request id).

        Args:
            param: How the request names the store ids (an error's ``param``: the route's
                ``vector_store_id``, the tool's ``tools[0].vector_store_ids[1]``).
            weights: The fusion's (embedding, text) weights (``ranking_options.
                hybrid_search``); a score is then the weighted RRF score over the best
                possible one, ``(we + wt) / (k + 1)``.

        Raises:
            NotFoundError: a store is unknown or another workspace's (404).
            PermissionDeniedError: a store's region is not the key's to use (403).
            InvalidRequestError: an expired store; an empty or over-long query.
            And the errors of the query's metered embedding (``EmbeddingService.embed``).
        """
        stores: list[KnowledgeBase] = []
        for i, vs_id in enumerate(vector_store_ids):
            where = param if param == "vector_store_id" else f"{param}[{i}]"
            stores.append(await self.stores.usable(principal, vs_id, where))
        best_rrf = (weights[0] + weights[1]) / (RRF_K + 1)
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
                    top_k=max_num_results,
                    ctx=ctx,
                    documents=allowed,
                    query_vector=vectors.get(key),
                    weights=weights,
                )
                for r in found:
                    doc = files.get(r.chunk.document_id)
                    if doc is None or doc.file_id is None:
                        continue
                    score = min(1.0, r.score / best_rrf)
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
        hits = sorted(best.values(), key=lambda h: (-h.score, h.chunk_id))
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
