"""Reciprocal rank fusion (pure).

Cormack, Clarke and Büttcher, "Reciprocal Rank Fusion outperforms Condorcet and individual
Rank Learning Methods", SIGIR 2009: a document's fused score is the sum over the rankings
that hold it of ``1 / (k + rank)`` (ranks from 1), with ``k = 60`` as in the paper. Only
ranks are used, so a cosine distance and a BM25 score need no calibration to be combined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RRF_K = 60


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk id and its score in one ranking (higher is better after fusion; for the
    inputs only the order counts)."""

    chunk_id: int
    score: float


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
        weights: One per ranking, multiplying its ``1 / (k + rank)`` (``None``: all 1;
            OpenAI's ``ranking_options.hybrid_search`` weights).
    """
    scores: dict[int, float] = {}
    for i, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[i]
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
    order = sorted(scores.items(), key=lambda kv: -kv[1])  # stable: first appearance wins ties
    hits = [Hit(cid, score) for cid, score in order]
    return hits if limit is None else hits[:limit]


__all__ = ["RRF_K", "Hit", "reciprocal_rank_fusion"]
