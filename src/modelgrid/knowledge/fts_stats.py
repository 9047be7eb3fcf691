"""Per-knowledge-base BM25 statistics beside SQLite's ``knowledge_fts``, and BM25 from them.

FTS5's ``bm25()`` takes ``N``, ``avgdl`` and each term's document frequency over its whole
table — every knowledge base of every workspace — so one tenant's documents would move
another's ranking. ``SqliteIndex`` keeps instead, in the transaction that writes or deletes
the chunks (as ``knowledge.pg_bm25`` does on PostgreSQL):

- ``knowledge_fts_terms``: per chunk, its ``length`` (``|D|`` as FTS5 counts it: the text's
  tokens and the ``kb`` column's one) and ``terms``, its stemmed terms with their counts
  (``counts``: ``" stem:count stem:count "``, ``knowledge.fts_tokens`` = FTS5's own terms);
- ``knowledge_fts_stats``: per knowledge base, its chunk count and total ``length``.

A search of a knowledge base without an in-process index (``knowledge.lexical``) lets FTS5
find the candidates (its MATCH: the knowledge base's chunks holding any query term) and scores
them here (``rank``): ``n(t)`` is how many candidates hold ``t`` — every chunk of the
knowledge base that holds it is a candidate — and ``N``, ``avgdl`` come from
``knowledge_fts_stats``. The formula: ``knowledge.bm25``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from modelgrid.knowledge import bm25, fts_tokens

KB_TOKENS = 1  # the ``kb`` column's one token, part of FTS5's row size

CREATE = (
    "CREATE TABLE IF NOT EXISTS knowledge_fts_terms ("
    "chunk_id INTEGER PRIMARY KEY, length INTEGER NOT NULL, terms TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS knowledge_fts_stats ("
    "knowledge_base_id VARCHAR(40) PRIMARY KEY, chunks BIGINT NOT NULL, "
    "length BIGINT NOT NULL)",
)
INSERT = "INSERT INTO knowledge_fts_terms (chunk_id, length, terms) VALUES (?, ?, ?)"
# ``kb`` gained ``n`` chunks of total length ``len`` (negative: lost)
ADD = (
    "INSERT INTO knowledge_fts_stats (knowledge_base_id, chunks, length) VALUES (:kb, :n, :len) "
    "ON CONFLICT (knowledge_base_id) DO UPDATE SET chunks = knowledge_fts_stats.chunks + :n, "
    "length = knowledge_fts_stats.length + :len"
)
# the chunks a delete chooses (``{where}``: on knowledge_chunks ``c``), per knowledge base
CHOSEN = (
    "SELECT c.knowledge_base_id, count(*), coalesce(sum(t.length), 0) FROM knowledge_chunks c "
    "JOIN knowledge_fts_terms t ON t.chunk_id = c.id WHERE {where} GROUP BY c.knowledge_base_id"
)
STATS = "SELECT chunks, length FROM knowledge_fts_stats WHERE knowledge_base_id = ?"
# FTS5's candidates with their terms (``?``: the MATCH)
CANDIDATES = (
    "SELECT f.rowid, t.length, t.terms FROM knowledge_fts f "
    "JOIN knowledge_fts_terms t ON t.chunk_id = f.rowid WHERE knowledge_fts MATCH ?"
)


def counts(text: str) -> tuple[int, str]:
    """``(length, terms)`` of a chunk's searchable text, as ``knowledge_fts_terms`` holds it."""
    terms = fts_tokens.terms(text)
    pairs = " ".join(f"{t}:{n}" for t, n in Counter(terms).items())
    return len(terms) + KB_TOKENS, f" {pairs} "


def tf(terms: str, stem: str) -> int:
    """How often the chunk of the ``terms`` value holds ``stem`` (0: not at all)."""
    at = terms.find(f" {stem}:")
    if at < 0:
        return 0
    start = at + len(stem) + 2
    return int(terms[start : terms.index(" ", start)])


def rank(
    rows: Sequence[tuple[int, int, str]],
    stems: Sequence[str],
    chunks: int,
    length: int,
    k: int,
    keep: set[int] | None = None,
) -> list[tuple[int, float]]:
    """BM25 ``(chunk id, score)`` of the ``k`` best candidate ``rows`` (chunk id, length,
    terms), best first, ties by chunk id, from the knowledge base's ``chunks`` and total ``length``;
    ``stems``: the query's terms (a repeated one counts again); ``keep``: only these chunks
    are returned (``n(t)`` still counts every candidate)."""
    if not rows or chunks <= 0:
        return []
    import numpy as np

    lengths = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
    avgdl = length / chunks
    scores = np.zeros(len(rows))
    blobs = [r[2] for r in rows]
    for stem, times in Counter(stems).items():
        needle = f" {stem}:"
        skip = len(needle)
        freq = np.zeros(len(rows))
        for i, blob in enumerate(blobs):  # ``tf``, inlined: this loop is the path's cost
            at = blob.find(needle)
            if at >= 0:
                freq[i] = int(blob[at + skip : blob.index(" ", at + skip)])
        holding = int(np.count_nonzero(freq))
        if holding:
            scores += bm25.term_scores(freq, lengths, avgdl, times * bm25.idf(chunks, holding))
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    chosen = np.flatnonzero(scores > 0)
    if keep is not None:
        chosen = chosen[np.isin(ids[chosen], np.fromiter(keep, dtype=np.int64))]
    return bm25.top(ids, scores, chosen, k)


__all__ = [
    "ADD",
    "CANDIDATES",
    "CHOSEN",
    "CREATE",
    "INSERT",
    "STATS",
    "counts",
    "rank",
    "tf",
]
