"""Fusing a dense and a lexical ranking into one (pure).

Two families, both from the literature:

- **Reciprocal rank fusion** (Cormack, Clarke and Büttcher, "Reciprocal Rank Fusion
  outperforms Condorcet and individual Rank Learning Methods", SIGIR 2009): a chunk's score
  is the sum over the rankings that hold it of ``weight / (k + rank)`` (ranks from 1). Only
  ranks count.
- **Convex combination of normalised scores** (Bruch, Gai and Ingber, "An Analysis of Fusion
  Functions for Hybrid Retrieval", ACM TOIS 42(1), 2023): ``alpha * n_dense + (1 - alpha) *
  n_lexical``, each retriever's scores normalised to 0..1 over its candidates; a chunk one
  retriever did not return scores 0 there. Normalisations (their section 4.1): ``min-max``
  ``(s - min) / (max - min)`` and ``theoretical-min`` (their TMM) ``(s - m) / (max - m)`` with
  ``m`` the score's lower bound (-1 for a cosine similarity, 0 for BM25). The paper finds it
  beats RRF and needs few labelled queries to tune ``alpha``.

The product's default (``DEFAULT``) is the one ``bench/retrieval_quality.py`` chose on half of
its labelled questions (by recall@5, then MRR) and checked on the other half (``bench/
RESULTS.md``, "Knowledge-base retrieval (#13)"): a convex combination of min-max normalised
scores, ``alpha = 0.4`` (dense), over each retriever's top 100. Its scores are 0..1 (1.0:
first in both rankings), so they serve as OpenAI's vector-store search scores as they are.
``RRF`` (``knowledge.fusion = "rrf"`` in the settings) is the issue's reciprocal rank fusion,
k = 60 and both rankings weighed alike: recall@5 0.888 against the default's 0.897 on the
held-out half.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

RRF_K = 60
COSINE_MIN = -1.0  # a cosine similarity's lower bound
BM25_MIN = 0.0  # BM25 (and PostgreSQL's ts_rank_cd) scores are >= 0

Method = Literal["rrf", "convex"]
Normalization = Literal["min-max", "theoretical-min"]


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk id and its score in one ranking (higher is better after fusion; for the
    inputs only the order counts)."""

    chunk_id: int
    score: float


@dataclass(frozen=True, slots=True)
class Fusion:
    """How hybrid retrieval fuses its two rankings.

    Attributes:
        method: ``rrf`` or ``convex`` (see the module docstring).
        dense_weight: The dense retriever's share in 0..1 (convex's ``alpha``; RRF weighs
            the dense ranking by it and the lexical one by ``1 - dense_weight``).
        rrf_k: RRF's constant.
        normalization: Convex's score normalisation.
        depth: Each retriever's candidates before fusion (at least; a larger ``top_k``
            raises it).
    """

    method: Method = "convex"
    dense_weight: float = 0.4
    rrf_k: int = RRF_K
    normalization: Normalization = "min-max"
    depth: int = 100

    def with_weights(self, embedding_weight: float, text_weight: float) -> Fusion:
        """This fusion with OpenAI's ``ranking_options.hybrid_search`` weights as the dense
        share ``embedding_weight / (embedding_weight + text_weight)`` (both >= 0, not both
        0; so (1, 1) is an even 0.5, not this fusion's own share)."""
        total = embedding_weight + text_weight
        return Fusion(
            self.method, embedding_weight / total, self.rrf_k, self.normalization, self.depth
        )

    def best_score(self) -> float:
        """The highest score ``fuse`` can give: a chunk first in both rankings (RRF:
        ``1 / (k + 1)`` with the weights summing to 1; convex: 1.0)."""
        return 1.0 / (self.rrf_k + 1) if self.method == "rrf" else 1.0

    def fuse(
        self,
        dense: Sequence[tuple[int, float]],
        lexical: Sequence[tuple[int, float]],
        limit: int | None = None,
    ) -> list[Hit]:
        """The two rankings fused, best first (``limit``: keep this many).

        Args:
            dense: ``(chunk id, cosine similarity)``, most similar first.
            lexical: ``(chunk id, BM25 score)``, best first (higher is better).
        """
        if self.method == "rrf":
            return reciprocal_rank_fusion(
                [[c for c, _ in dense], [c for c, _ in lexical]],
                k=self.rrf_k,
                limit=limit,
                weights=[self.dense_weight, 1.0 - self.dense_weight],
            )
        return convex_combination(
            dense,
            lexical,
            dense_weight=self.dense_weight,
            normalization=self.normalization,
            limit=limit,
        )


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]],
    *,
    k: int = RRF_K,
    limit: int | None = None,
    weights: Sequence[float] | None = None,
) -> list[Hit]:
    """Fuse ``rankings`` (each a list of chunk ids, best first) into one, best first; ties
    keep the order of first appearance (the first ranking's order first).

    Args:
        rankings: One list of ids per retriever (an id at most once per list).
        k: The constant of the paper (60).
        limit: Keep this many (``None``: all).
        weights: One per ranking, multiplying its ``1 / (k + rank)`` (``None``: all 1).
    """
    scores: dict[int, float] = {}
    for i, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[i]
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
    order = sorted(scores.items(), key=lambda kv: -kv[1])  # stable: first appearance wins ties
    hits = [Hit(cid, score) for cid, score in order]
    return hits if limit is None else hits[:limit]


def normalized(
    scores: Sequence[tuple[int, float]], normalization: Normalization, lower_bound: float
) -> dict[int, float]:
    """Each id's score mapped to 0..1 (Bruch et al. 2023, section 4.1): ``min-max`` over
    these scores, ``theoretical-min`` from ``lower_bound`` to their maximum. All-equal
    scores (one candidate, say) map to 1.0."""
    if not scores:
        return {}
    top = max(s for _, s in scores)
    low = min(s for _, s in scores) if normalization == "min-max" else lower_bound
    span = top - low
    if span <= 0:
        return {cid: 1.0 for cid, _ in scores}
    return {cid: max(0.0, (s - low) / span) for cid, s in scores}


def convex_combination(
    dense: Sequence[tuple[int, float]],
    lexical: Sequence[tuple[int, float]],
    *,
    dense_weight: float,
    normalization: Normalization,
    limit: int | None = None,
) -> list[Hit]:
    """``dense_weight * n_dense + (1 - dense_weight) * n_lexical`` per chunk, best first
    (ties: the dense ranking's order, then the lexical one's). A chunk missing from one
    ranking scores 0 there.

    Args:
        dense: ``(chunk id, cosine similarity in -1..1)``, most similar first.
        lexical: ``(chunk id, BM25 score >= 0)``, best first.
        dense_weight: ``alpha`` in 0..1.
        normalization: ``min-max`` or ``theoretical-min`` (bounds: ``COSINE_MIN``,
            ``BM25_MIN``).
        limit: Keep this many (``None``: all).
    """
    nd = normalized(dense, normalization, COSINE_MIN)
    nl = normalized(lexical, normalization, BM25_MIN)
    order = list(nd) + [c for c in nl if c not in nd]
    fused = [
        (cid, dense_weight * nd.get(cid, 0.0) + (1.0 - dense_weight) * nl.get(cid, 0.0))
        for cid in order
    ]
    fused.sort(key=lambda kv: -kv[1])
    hits = [Hit(cid, score) for cid, score in fused]
    return hits if limit is None else hits[:limit]


DEFAULT = Fusion()
RRF = Fusion(method="rrf", dense_weight=0.5)  # Cormack et al.'s: both rankings alike, k = 60


def by_method(method: Method) -> Fusion:
    """The product's fusion of that family: ``DEFAULT`` (convex) or ``RRF``."""
    return RRF if method == "rrf" else DEFAULT


__all__ = [
    "BM25_MIN",
    "COSINE_MIN",
    "DEFAULT",
    "RRF",
    "RRF_K",
    "Fusion",
    "Hit",
    "Method",
    "Normalization",
    "by_method",
    "convex_combination",
    "normalized",
    "reciprocal_rank_fusion",
]
