"""Knowledge bases on the data plane: indexing's embeddings and hybrid retrieval.

Both embed through ``EmbeddingService.embed``, the metered, routed call of ``/v1/embeddings``:
the key's scope and residency decide the replica (a 403 / 503 like any request), the tokens
are admitted and one usage record is written per call, in the region it ran in.

- ``IndexingMeter``: indexing is billed to the key that added the document, at the online
  price, admitted against its **budgets only** (``serving.batch_lines.budgets_only``): a large
  document must not eat the key's online rate limits, and its budget still stops it.
- ``KnowledgeEmbedder``: token counts for chunking (the routed replica's own tokenizer,
  counted, not billed: like ``/tokenize``) and metered embeddings.
- ``Retrieval``: dense (sqlite-vec / cosine), lexical (FTS5 / BM25) and hybrid retrieval, the
  two rankings fused by ``knowledge.fusion`` (by default ``fusion.DEFAULT``: a convex
  combination of min-max normalised scores, Bruch et al. 2023, its weight chosen on half of
  ``bench/retrieval_quality.py``'s questions). The query's embedding is a metered call billed
  to the caller. A query longer than the embedding model's longest input is cut to its last
  tokens that fit before it is embedded (``KnowledgeEmbedder.fit``: the question usually
  ends a long pasted input); BM25 still reads the whole query, and the usage is the tokens
  actually embedded.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from modelgrid.core.errors import InvalidRequestError
from modelgrid.core.ids import new_request_id
from modelgrid.core.types import CallContext
from modelgrid.knowledge.fusion import DEFAULT, Fusion
from modelgrid.knowledge.index import KnowledgeIndex, StoredChunk
from modelgrid.serving.batch_lines import BudgetsOnlyMeter
from modelgrid.serving.embeddings import EmbeddingService
from modelgrid.serving.metered import routing_hints
from modelgrid.tenancy.events import UsageEvent
from modelgrid.tenancy.ratelimit import Admission
from modelgrid.tenancy.service import Principal

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")
MAX_TOP_K = 100
MAX_QUERY_CHARS = 8000
_SPECIAL_TOKENS_MAX = 8  # at most this many tokens a tokenizer adds of its own ([CLS]/[SEP])


def _ctx() -> CallContext:
    return CallContext(
        request_id=new_request_id(), client_request_id=None, started=time.perf_counter()
    )


def check_query(query: str) -> str:
    """``query`` if it can be searched.

    Raises:
        InvalidRequestError: empty (or only spaces), or longer than ``MAX_QUERY_CHARS``.
    """
    if not query.strip():
        raise InvalidRequestError("'query' must not be empty.", param="query")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequestError(
            f"'query' is longer than {MAX_QUERY_CHARS} characters.", param="query"
        )
    return query


class IndexingMeter(BudgetsOnlyMeter):
    """The ``serving.meter.Meter`` of indexing (see the module docstring): billed at the
    online price."""

    def finish(self, principal: Principal, admissions: list[Admission], event: UsageEvent) -> None:
        self._tenancy.finish(principal, admissions, event)


class KnowledgeEmbedder:
    """Counts and embeddings for knowledge bases, through an ``EmbeddingService``.

    Args:
        embeddings: The service (the gateway's own for queries; one over an
            ``IndexingMeter`` for indexing).
    """

    def __init__(self, embeddings: EmbeddingService) -> None:
        self.embeddings = embeddings

    def limits(self, model: str) -> tuple[int, int]:
        """The model's (longest input in tokens, vector length; 0 before a replica loaded).

        Raises:
            InvalidRequestError: not an embedding model; see ``EmbeddingService.engine``.
        """
        engine = self.embeddings.engine(model)
        return engine.max_input_tokens, engine.dimensions

    async def count(self, principal: Principal, model: str, texts: Sequence[str]) -> list[int]:
        """Each text's tokens by the model's tokenizer on a replica the principal may use
        (residency checked, not billed).

        Raises:
            PermissionDeniedError, ServiceUnavailableError, ModelNotFoundError, EngineError.
        """
        route = self.embeddings.engine(model).route(routing_hints(principal, _ctx()))
        return await route.count_tokens(list(texts))

    async def fit(self, principal: Principal, model: str, text: str) -> str:
        """``text`` cut to fit the model's longest input: unchanged when it fits, else its
        longest suffix that fits, starting at a word where one does (the question usually
        ends a long input). Found by the routed replica's own token counts (not billed).

        Raises:
            As ``count``.
        """
        route = self.embeddings.engine(model).route(routing_hints(principal, _ctx()))
        limit = route.max_input_tokens
        # A token covers at least one byte (byte-level BPE) or character (WordPiece), plus a
        # few special tokens: a text this short fits without asking the replica to count.
        if limit <= 0 or len(text.encode()) + _SPECIAL_TOKENS_MAX <= limit:
            return text

        async def fits(start: int) -> bool:
            [n] = await route.count_tokens([text[start:]])
            return n <= limit

        if await fits(0):
            return text
        # the smallest start that fits: first among word starts, then inside the last word
        starts = [m.start() for m in re.finditer(r"\S+", text)]
        if starts and await fits(starts[-1]):
            lo, hi = 0, len(starts) - 1  # starts[hi] fits, starts[0] does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if await fits(starts[mid]):
                    hi = mid
                else:
                    lo = mid
            return text[starts[hi] :]
        lo, hi = starts[-1] if starts else 0, len(text) - 1  # hi: one character
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if await fits(mid):
                hi = mid
            else:
                lo = mid
        return text[hi:]

    async def embed(
        self,
        principal: Principal,
        model: str,
        texts: Sequence[str],
        ctx: CallContext | None = None,
    ) -> tuple[list[bytes], int]:
        """One metered embedding call: (float32 vectors, tokens). Raises as
        ``EmbeddingService.embed``."""
        return await self.embeddings.embed(principal, model, list(texts), ctx or _ctx())


@dataclass(frozen=True, slots=True)
class Retrieved:
    """A chunk and how it ranked: the fused score (hybrid: ``Fusion.fuse``'s, 0..1) or the
    retriever's own (cosine similarity for dense, BM25 for lexical), and its rank in each
    retriever (``None``: not among that retriever's candidates)."""

    chunk: StoredChunk
    score: float
    dense_rank: int | None
    lexical_rank: int | None


class Retrieval:
    """Hybrid retrieval over one knowledge base of the caller's workspace.

    Args:
        index: The knowledge index.
        embedder: Query embeddings (metered to the caller).
    """

    def __init__(
        self, index: KnowledgeIndex, embedder: KnowledgeEmbedder, fusion: Fusion = DEFAULT
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.fusion = fusion

    async def embed_query(
        self, principal: Principal, model: str, query: str, ctx: CallContext | None = None
    ) -> bytes:
        """The query's float32 embedding: one metered call billed to the principal. A query
        longer than the model's longest input is embedded cut to its last tokens that fit
        (``KnowledgeEmbedder.fit``).

        Raises:
            As ``EmbeddingService.embed``.
        """
        query = await self.embedder.fit(principal, model, query)
        vectors, _tokens = await self.embedder.embed(principal, model, [query], ctx)
        return vectors[0]

    async def search(
        self,
        principal: Principal,
        knowledge_base_id: str,
        model: str,
        query: str,
        *,
        top_k: int = 5,
        mode: Mode = "hybrid",
        ctx: CallContext | None = None,
        documents: Sequence[str] | None = None,
        query_vector: bytes | None = None,
        fusion: Fusion | None = None,
    ) -> list[Retrieved]:
        """The ``top_k`` chunks for ``query``, best first. The caller has checked that the
        knowledge base is the principal's workspace's; every index read is filtered by the
        workspace again. ``documents``: only those documents' chunks (an attribute filter's
        survivors). ``query_vector``: the query's embedding by ``model``, already made (one
        metered call for several knowledge bases of one model: ``embed_query``).
        ``fusion``: how hybrid fuses the two rankings, and each one's candidate depth
        (``Fusion.depth``, raised to ``top_k``; ``None``: this retrieval's own).

        Raises:
            InvalidRequestError: an empty or over-long query, ``top_k`` out of 1..100, an
                unknown mode.
            See ``EmbeddingService.embed`` for the query's embedding (dense and hybrid).
        """
        check_query(query)
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidRequestError(f"'top_k' must be 1..{MAX_TOP_K}.", param="top_k")
        if mode not in MODES:
            raise InvalidRequestError(f"'mode' must be one of {', '.join(MODES)}.", param="mode")
        ws = principal.workspace_id
        fusion = fusion or self.fusion
        depth = max(fusion.depth, top_k)

        async def by_vector() -> list[tuple[int, float]]:
            if mode == "lexical":
                return []
            vector = query_vector
            if vector is None:
                vector = await self.embed_query(principal, model, query, ctx)
            dims = len(vector) // 4
            return await self.index.dense(ws, knowledge_base_id, vector, dims, depth, documents)

        async def by_words() -> list[tuple[int, float]]:
            if mode == "dense":
                return []
            return await self.index.lexical(ws, knowledge_base_id, query, depth, documents)

        # BM25 runs while the query is embedded and searched by vector (the index reads on
        # two connections at once)
        dense, lexical = await asyncio.gather(by_vector(), by_words())
        dense_rank = {cid: r for r, (cid, _) in enumerate(dense, start=1)}
        lexical_rank = {cid: r for r, (cid, _) in enumerate(lexical, start=1)}
        if mode == "dense":
            ranked = [(cid, 1.0 - dist) for cid, dist in dense[:top_k]]
        elif mode == "lexical":
            ranked = lexical[:top_k]
        else:
            similar = [(cid, 1.0 - dist) for cid, dist in dense]
            fused = fusion.fuse(similar, lexical, limit=top_k)
            ranked = [(h.chunk_id, h.score) for h in fused]
        rows = await self.index.chunks(ws, [cid for cid, _ in ranked])
        return [
            Retrieved(rows[cid], score, dense_rank.get(cid), lexical_rank.get(cid))
            for cid, score in ranked
            if cid in rows
        ]


__all__ = [
    "MODES",
    "IndexingMeter",
    "KnowledgeEmbedder",
    "Mode",
    "Retrieval",
    "Retrieved",
    "check_query",
]
