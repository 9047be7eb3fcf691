"""Okapi BM25 as SQLite FTS5's ``bm25()`` computes it, over numpy arrays.

The formula is ``knowledge.pg_bm25``'s (Robertson and Zaragoza, "The Probabilistic Relevance
Framework: BM25 and Beyond", 2009, eq. 3.15 with the Robertson/Spärck Jones IDF; FTS5's form:
sqlite.org/fts5.html section 5.1.1 and ``fts5Bm25Function`` in ``fts5_aux.c``)::

    score(D, Q) = sum over the query's terms t of
        IDF(t) * f(t, D) * (k1 + 1) / (f(t, D) + k1 * (1 - b + b * |D| / avgdl))
    IDF(t) = ln((N - n(t) + 0.5) / (n(t) + 0.5)), or 1e-6 where that is not above 0
    k1 = 1.2, b = 0.75

As in FTS5, a term the query names twice (two words with one stem) counts twice, and ``|D|``
is the row's size over all of ``knowledge_fts``'s columns (its text's tokens and the ``kb``
column's one). Unlike FTS5's, ``N``, ``n(t)`` and ``avgdl`` are the caller's: the knowledge
base's own (``knowledge.fts_stats``, ``knowledge.lexical``).
"""

from __future__ import annotations

import math
from typing import Any

K1 = 1.2
B = 0.75
IDF_FLOOR = 1e-6


def idf(chunks: int, holding: int) -> float:
    """``IDF(t)`` of a term ``holding`` of the knowledge base's ``chunks`` chunks hold."""
    value = math.log((chunks - holding + 0.5) / (holding + 0.5))
    return value if value > 0 else IDF_FLOOR


def term_scores(tf: Any, lengths: Any, avgdl: float, weight: float) -> Any:
    """One term's part of the score of each chunk: ``weight`` (its IDF, times how often the
    query names it) times the saturated frequency; ``tf`` and ``lengths`` are aligned float
    arrays (the chunks holding it: counts and ``|D|``)."""
    return weight * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths / avgdl))


def top(ids: Any, scores: Any, chosen: Any, k: int) -> list[tuple[int, float]]:
    """The ``k`` best of the positions ``chosen`` as ``(id, score)``, best first, ties by id
    (``ids``, ``scores``: arrays by position; a partial sort, then the top ``k`` ordered)."""
    import numpy as np

    if len(chosen) > k:
        part = np.argpartition(-scores[chosen], k - 1)[:k] if k > 0 else chosen[:0]
        cut = scores[chosen[part]].min() if k > 0 else 0.0
        chosen = chosen[scores[chosen] >= cut]  # the k best and whatever ties the k-th
    order = chosen[np.lexsort((ids[chosen], -scores[chosen]))][:k]
    return [(int(ids[i]), float(scores[i])) for i in order]


__all__ = ["IDF_FLOOR", "K1", "B", "idf", "term_scores", "top"]
