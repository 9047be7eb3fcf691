"""BM25 over a large knowledge base's chunks from postings kept in the process.

FTS5 scores every row its MATCH finds (no top-k pruning): at 100k chunks ~200/440 ms p50/p95;
PostgreSQL's ``pg_bm25.rank_sql`` likewise, ~1.2 s p50 (bench/RESULTS.md, #13). A
``LexicalCache`` holds, per (workspace, knowledge base), an inverted index built from the
store's terms (a ``TermSource``. SQLite: ``knowledge_fts_terms``, ``knowledge.fts_stats``, each
chunk's FTS5 terms with their counts and its length; PostgreSQL: ``knowledge.pg_index``, each
chunk's ``tsvector`` lexemes with their position counts and its stored length): per term, the
positions of the chunks holding it and how often (numpy arrays, one CSC-like block per
segment). A query adds up its terms' BM25 contributions (``knowledge.bm25``: FTS5's
``bm25()``) into one score per chunk and takes the top ``k`` by a partial sort. ``N``,
``avgdl`` and each term's ``n(t)`` are the knowledge base's own, counted over its live chunks
at query time, so a refresh never recomputes weights.

**Lifecycle** (``knowledge.cache.RevisionCache``, as ``knowledge.ann``): built lazily off the
event loop for knowledge bases of at least ``min_chunks`` chunks, fresh by the knowledge
base's revision, LRU-evicted under a cap; until an index is ready, and while it refreshes,
``search`` answers ``None`` and the caller runs the store's path (FTS5 or ``rank_sql``: exact,
also with per-knowledge-base statistics, slower). A refresh reads the knowledge base's current
chunk ids: new chunks become a new segment, vanished ones are masked out (statistics
included); with more than ``DEAD_SHARE`` dead, ``MAX_SEGMENTS`` segments, or twice the chunks
of its last build, it is rebuilt. The build parses the terms in Python (holding the GIL:
seconds at 100k chunks).

**Memory.** A budget of its own, beside the ANN's vectors: at most ``max_chunks`` chunks over
all lexical indexes (12 bytes a posting, one per distinct term a chunk holds: ~1.4 kB for a
chunk of 120 words drawn from the bench's vocabulary, ~115 distinct terms).
"""

from __future__ import annotations

import asyncio
import re
import threading
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelgrid.knowledge import bm25
from modelgrid.knowledge.cache import Key, RevisionCache, Source

DEAD_SHARE = 0.2  # rebuild when more than this share of an index's chunks was deleted
GROWTH = 2.0  # rebuild when it holds this many times the chunks of its last build
MAX_SEGMENTS = 8  # rebuild rather than add a segment beyond this
_PAIR = re.compile(r"(\S+):(\d+)")  # a ``terms`` value's pairs (``knowledge.fts_stats``)


class TermSource(Source, Protocol):
    """What the cache reads from a store (all reads scoped to the workspace)."""

    async def ids(self, workspace_id: str, knowledge_base_id: str) -> list[tuple[int, str]]:
        """``(chunk id, document id)`` of every chunk of the knowledge base."""
        ...

    async def terms(
        self, workspace_id: str, knowledge_base_id: str, ids: Sequence[int] | None
    ) -> list[tuple[int, str, int, str]]:
        """``(chunk id, document id, length, terms)`` (``knowledge_fts_terms``) of ``ids``,
        or of every chunk of the knowledge base (``None``)."""
        ...


@dataclass(frozen=True, slots=True)
class LexicalSettings:
    """Args:
    min_chunks: Knowledge bases with fewer chunks keep the FTS5 path.
    max_chunks: Most chunks held over all lexical indexes (LRU eviction beyond).
    """

    min_chunks: int = 1_000
    max_chunks: int = 2_000_000


@dataclass(frozen=True, slots=True)
class _Segment:
    vocab: dict[str, int]  # stem -> column
    indptr: Any  # int64 [columns + 1]: column c's postings are [indptr[c], indptr[c + 1])
    rows: Any  # int32 positions (of the whole index)
    tf: Any  # float64 counts


@dataclass(eq=False)
class _Held:
    ids: Any  # int64: position -> chunk id
    docs: list[str]  # position -> document id
    doc_codes: Any  # int32: position -> code of its document
    doc_code: dict[str, int]
    lengths: Any  # float64: position -> |D|
    alive: Any  # bool: position -> not deleted
    segments: list[_Segment]
    live: int  # chunks alive
    live_length: int  # their total length
    built: int  # chunks at its last build
    revision: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])


def _segment(blobs: Sequence[str], offset: int) -> _Segment:
    """The postings of chunks ``offset``, ``offset + 1``, ... with these ``terms`` values."""
    import numpy as np

    vocab: dict[str, int] = {}
    codes, freqs, per_chunk = array("i"), array("i"), array("i")
    code = vocab.setdefault
    for blob in blobs:
        found = _PAIR.findall(blob)  # [(stem, count)], in C
        codes.extend([code(stem, len(vocab)) for stem, _ in found])
        freqs.extend([int(n) for _, n in found])
        per_chunk.append(len(found))
    columns = np.frombuffer(codes, dtype=np.int32) if codes else np.zeros(0, np.int32)
    positions = np.repeat(
        np.arange(offset, offset + len(blobs), dtype=np.int32),
        np.frombuffer(per_chunk, dtype=np.int32) if per_chunk else np.zeros(0, np.int32),
    )
    order = np.argsort(columns, kind="stable")
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(np.bincount(columns, minlength=len(vocab)), out=indptr[1:])
    tf = (np.frombuffer(freqs, dtype=np.int32) if freqs else np.zeros(0, np.int32))[order]
    return _Segment(vocab, indptr, positions[order], tf.astype(np.float64))


def _new(rows: Sequence[tuple[int, str, int, str]], revision: int) -> _Held:
    import numpy as np

    doc_code: dict[str, int] = {}
    docs = [r[1] for r in rows]
    codes = np.fromiter(
        (doc_code.setdefault(d, len(doc_code)) for d in docs), dtype=np.int32, count=len(rows)
    )
    lengths = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
    return _Held(
        ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
        docs=docs,
        doc_codes=codes,
        doc_code=doc_code,
        lengths=lengths,
        alive=np.ones(len(rows), dtype=bool),
        segments=[_segment([r[3] for r in rows], 0)],
        live=len(rows),
        live_length=int(lengths.sum()),
        built=len(rows),
        revision=revision,
    )


def _extend(
    held: _Held, rows: Sequence[tuple[int, str, int, str]], dead: Sequence[int], revision: int
) -> None:
    """``held`` with ``rows`` as a new segment and the positions ``dead`` masked out."""
    import numpy as np

    segment = _segment([r[3] for r in rows], held.size) if rows else None
    codes = [held.doc_code.setdefault(r[1], len(held.doc_code)) for r in rows]
    lengths = np.asarray([r[2] for r in rows], dtype=np.float64)
    with held.lock:  # no search reads it while it changes
        if segment is not None:
            held.segments.append(segment)
            held.ids = np.concatenate([held.ids, np.asarray([r[0] for r in rows], np.int64)])
            held.docs = held.docs + [r[1] for r in rows]
            held.doc_codes = np.concatenate([held.doc_codes, np.asarray(codes, np.int32)])
            held.lengths = np.concatenate([held.lengths, lengths])
            held.alive = np.concatenate([held.alive, np.ones(len(rows), dtype=bool)])
            held.live += len(rows)
            held.live_length += int(lengths.sum())
        if len(dead):
            gone = np.asarray(dead, dtype=np.int64)
            held.alive[gone] = False
            held.live -= len(gone)
            held.live_length -= int(held.lengths[gone].sum())
        held.revision = revision


def _search(
    held: _Held, stems: Sequence[str], k: int, documents: Sequence[str] | None
) -> list[tuple[int, float]]:
    import numpy as np

    with held.lock:
        if held.live <= 0:
            return []
        avgdl = held.live_length / held.live
        scores = np.zeros(held.size)
        masked = not bool(held.alive.all())
        for stem, times in Counter(stems).items():
            parts = [
                (s.rows[s.indptr[c] : s.indptr[c + 1]], s.tf[s.indptr[c] : s.indptr[c + 1]])
                for s in held.segments
                if (c := s.vocab.get(stem)) is not None
            ]
            if not parts:
                continue
            rows = np.concatenate([p[0] for p in parts])
            tf = np.concatenate([p[1] for p in parts])
            if masked:
                live = held.alive[rows]
                rows, tf = rows[live], tf[live]
            if not len(rows):
                continue
            weight = times * bm25.idf(held.live, len(rows))
            scores[rows] += bm25.term_scores(tf, held.lengths[rows], avgdl, weight)
        chosen = np.flatnonzero(scores > 0)
        if documents is not None:
            wanted = [held.doc_code[d] for d in documents if d in held.doc_code]
            chosen = chosen[np.isin(held.doc_codes[chosen], np.asarray(wanted, np.int32))]
        return bm25.top(held.ids, scores, chosen, k)


class LexicalCache(RevisionCache[_Held, TermSource]):
    """See the module docstring. One per process (per index); methods run on the event loop.
    Keys: (workspace, knowledge base).

    Args:
        settings: Threshold and cap.
    """

    def __init__(self, settings: LexicalSettings | None = None) -> None:
        super().__init__("BM25")
        self.settings = settings or LexicalSettings()

    @property
    def min_items(self) -> int:
        return self.settings.min_chunks

    @property
    def max_items(self) -> int:
        return self.settings.max_chunks

    def _size(self, held: _Held) -> int:
        return held.size

    def _revision(self, held: _Held) -> int:
        return held.revision

    def holds(self, workspace_id: str, knowledge_base_id: str) -> bool:
        """Whether an index of the knowledge base is held (at any revision)."""
        return self._holds((workspace_id, knowledge_base_id))

    async def search(
        self,
        source: TermSource,
        workspace_id: str,
        knowledge_base_id: str,
        stems: Sequence[str],
        k: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]] | None:
        """The ``k`` best chunks by BM25 ``(chunk id, score)``, best first, ties by chunk id,
        for the query's ``stems`` (a repeated one counts again; ``knowledge.fts_tokens``),
        with the knowledge base's own statistics; with ``documents``, only their chunks — or
        ``None``: the caller runs the FTS5 path (a small knowledge base, an index being built
        or refreshed, one over the cap)."""
        held = await self.current(source, (workspace_id, knowledge_base_id))
        if held is None:
            return None
        return await asyncio.to_thread(_search, held, stems, k, documents)

    async def _build(self, source: TermSource, key: Key, revision: int) -> _Held | None:
        rows = await source.terms(key[0], key[1], None)
        if len(rows) > self.settings.max_chunks:
            return None
        held = await asyncio.to_thread(_new, rows, revision)
        self.builds += 1
        return held

    async def _refresh(
        self, source: TermSource, key: Key, held: _Held, revision: int
    ) -> _Held | None:
        current = await source.ids(key[0], key[1])
        now = set(current)
        pairs = list(zip(held.ids.tolist(), held.docs, strict=True))
        alive = held.alive.tolist()
        have = {pair for p, pair in enumerate(pairs) if alive[p]}  # a reused id: a new chunk
        dead = [p for p, pair in enumerate(pairs) if alive[p] and pair not in now]
        new = [cid for cid, doc in current if (cid, doc) not in have]
        after = held.size + len(new)
        if (
            (held.size - held.live + len(dead)) / max(after, 1) > DEAD_SHARE
            or len(held.segments) >= MAX_SEGMENTS
            or after > GROWTH * max(held.built, 1)
        ):
            return await self._build(source, key, revision)
        if after > self.settings.max_chunks:
            return None
        rows = await source.terms(key[0], key[1], new) if new else []
        await asyncio.to_thread(_extend, held, rows, dead, revision)
        self.refreshes += 1
        return held


__all__ = ["DEAD_SHARE", "LexicalCache", "LexicalSettings", "TermSource"]
