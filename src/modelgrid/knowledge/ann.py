"""Approximate nearest neighbours over a knowledge base's vectors, kept in the process.

The store (``SqliteIndex``, ``PgIndex``) stays the durable truth of chunks and vectors; an
``AnnCache`` holds, per (workspace, knowledge base, dimensions), a faiss inverted-file index
(``IndexIVFFlat``: k-means into ``sqrt(n)`` lists, a query scans its ``nprobe`` nearest lists
exactly; inner product over L2-normalised vectors, so ``1 - score`` is the cosine distance the
exact scan returns) built from the store, as pgvector's IVFFlat/HNSW, LanceDB (IVF) and Chroma
put an ANN index over a durable store (Jégou, Douze & Schmid, "Product quantization for nearest
neighbor search", TPAMI 2011, section on the inverted file). IVF rather than HNSW: on the
bench's 100k set (questions far from noisy filler vectors) HNSW (M = 32, efConstruction = 64)
plateaued at recall@50 0.85 and took 116 s to build; IVF reaches 0.99 at nprobe 32 and builds
in seconds (bench/RESULTS.md, #13).

**Lifecycle** (``knowledge.cache.RevisionCache``): built lazily off the event loop (faiss
releases the GIL), fresh by the knowledge base's revision, LRU-evicted under a cap; until an
index is ready, and while it refreshes, searches answer ``None`` and the caller runs its exact
scan. A knowledge base below ``min_vectors`` chunks is never indexed (the exact scan is fast
and exact there). A refresh reads the knowledge base's current chunk ids: new ones are added to
their lists, vanished ones filtered out of every search (a faiss ``IDSelector``); when more
than ``DEAD_SHARE`` of it is dead, or it has doubled since its lists were trained, it is
rebuilt.

**Memory.** At most ``max_vectors`` vectors are held over all indexes (about ``dims * 4 + 8``
bytes each: 384 dims, ~1.5 kB); a knowledge base larger than the cap is never indexed.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelgrid.knowledge.cache import Key, RevisionCache

DEAD_SHARE = 0.2  # rebuild when more than this share of an index's vectors was deleted
GROWTH = 2.0  # rebuild (retrain the lists) when it holds this many times what they learnt from


class VectorSource(Protocol):
    """What the cache reads from a store (all reads scoped to the workspace)."""

    async def state(self, knowledge_base_id: str) -> tuple[int, int] | None:
        """``(revision, chunks)`` of the knowledge base (``None``: never written)."""
        ...

    async def ids(
        self, workspace_id: str, knowledge_base_id: str, dims: int
    ) -> list[tuple[int, str]]:
        """``(chunk id, document id)`` of every chunk of the knowledge base with a
        ``dims``-long vector (the document tells a reused row id from the chunk it had)."""
        ...

    async def vectors(
        self, workspace_id: str, knowledge_base_id: str, dims: int, ids: Sequence[int] | None
    ) -> tuple[list[tuple[int, str]], bytes]:
        """``((chunk id, document id) per chunk, their float32 vectors concatenated)``: of
        ``ids``, or of every chunk (``None``)."""
        ...


@dataclass(frozen=True, slots=True)
class AnnSettings:
    """Args:
    min_vectors: Knowledge bases with fewer chunks keep the exact scan.
    max_vectors: Most vectors held over all indexes (LRU eviction beyond).
    nprobe: Lists a query scans, of ``sqrt(n)`` (recall vs latency).
    build_threads: OpenMP threads of one build.
    """

    min_vectors: int = 20_000
    max_vectors: int = 2_000_000
    nprobe: int = 32
    build_threads: int = 1


@dataclass(eq=False)
class _Held:
    index: Any  # faiss.IndexIVFFlat (faiss.IndexFlatIP while empty)
    ids: Any  # numpy int64: position -> chunk id
    docs: list[str]  # position -> document id
    revision: int
    trained: int  # vectors its lists were trained on
    selector: Any = None  # faiss.IDSelector passing all but the deleted positions (None: all)
    held: list[Any] = field(default_factory=list)  # what the selector points to, kept alive
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])


def _faiss() -> Any:
    import faiss  # the ``knowledge`` extra

    return faiss


def _matrix(blob: bytes, dims: int) -> Any:
    import numpy as np

    matrix = np.frombuffer(blob, dtype=np.float32).reshape(-1, dims).copy()
    _faiss().normalize_L2(matrix)
    return matrix


class AnnCache(RevisionCache[_Held, VectorSource]):
    """See the module docstring. One per process (per index); methods run on the event loop.
    Keys: (workspace, knowledge base, dimensions).

    Args:
        settings: Thresholds, cap and IVF parameters.
    """

    def __init__(self, settings: AnnSettings | None = None) -> None:
        super().__init__("ANN")
        self.settings = settings or AnnSettings()

    @property
    def min_items(self) -> int:
        return self.settings.min_vectors

    @property
    def max_items(self) -> int:
        return self.settings.max_vectors

    def _size(self, held: _Held) -> int:
        return held.size

    def _revision(self, held: _Held) -> int:
        return held.revision

    @property
    def vectors(self) -> int:
        """Vectors held over all indexes."""
        return self.items

    def holds(self, workspace_id: str, knowledge_base_id: str, dims: int) -> bool:
        """Whether an index of the knowledge base is held (at any revision)."""
        return self._holds((workspace_id, knowledge_base_id, str(dims)))

    async def search(
        self,
        source: VectorSource,
        workspace_id: str,
        knowledge_base_id: str,
        vector: bytes,
        dims: int,
        k: int,
    ) -> list[tuple[int, float]] | None:
        """The ``k`` nearest chunks by cosine distance ``(chunk id, distance)``, nearest first,
        from the index — or ``None``: the caller runs its exact scan (a small knowledge base,
        an index being built or refreshed, one over the cap)."""
        graph = await self.current(source, (workspace_id, knowledge_base_id, str(dims)))
        if graph is None:
            return None
        return await asyncio.to_thread(self._search, graph, vector, dims, k)

    def _search(self, graph: _Held, vector: bytes, dims: int, k: int) -> list[tuple[int, float]]:
        query = _matrix(vector, dims)
        params = _faiss().SearchParametersIVF(nprobe=self.settings.nprobe)
        with graph.lock:
            if graph.selector is not None:
                params.sel = graph.selector
            scores, positions = graph.index.search(query, k, params=params)
        out = []
        for score, pos in zip(scores[0], positions[0], strict=True):
            if pos >= 0:
                out.append((int(graph.ids[pos]), 1.0 - float(score)))
        return out

    async def _build(self, source: VectorSource, key: Key, revision: int) -> _Held | None:
        ws, kb, dims = key[0], key[1], int(key[2])
        rows, blob = await source.vectors(ws, kb, dims, None)
        if len(rows) > self.settings.max_vectors:
            return None
        graph = await asyncio.to_thread(self._new_graph, rows, blob, dims, revision)
        self.builds += 1
        return graph

    def _new_graph(
        self, rows: list[tuple[int, str]], blob: bytes, dims: int, revision: int
    ) -> _Held:
        import numpy as np

        faiss = _faiss()
        s = self.settings
        faiss.omp_set_num_threads(s.build_threads)  # this thread's parallel regions
        if rows:
            matrix = _matrix(blob, dims)
            lists = max(1, round(math.sqrt(len(rows))))
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(dims), dims, lists, faiss.METRIC_INNER_PRODUCT
            )
            index.cp.min_points_per_centroid = 1  # a small set: no warning, fewer points a list
            index.train(matrix)
            index.add(matrix)
        else:
            index = faiss.IndexFlatIP(dims)
        ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        return _Held(index, ids, [r[1] for r in rows], revision, len(rows))

    async def _refresh(
        self, source: VectorSource, key: Key, graph: _Held, revision: int
    ) -> _Held | None:
        import numpy as np

        ws, kb, dims = key[0], key[1], int(key[2])
        current = await source.ids(ws, kb, dims)
        now = set(current)
        pairs = list(zip(graph.ids.tolist(), graph.docs, strict=True))
        held = set(pairs)
        dead = [p for p, pair in enumerate(pairs) if pair not in now]
        new = [cid for cid, doc in current if (cid, doc) not in held]
        if (dead and len(dead) / (graph.size + len(new)) > DEAD_SHARE) or (
            graph.size + len(new) > GROWTH * max(graph.trained, 1)
        ):
            return await self._build(source, key, revision)
        if graph.size + len(new) > self.settings.max_vectors:
            return None
        rows, blob = await source.vectors(ws, kb, dims, new) if new else ([], b"")
        positions = np.asarray(dead, dtype=np.int64)
        await asyncio.to_thread(self._extend, graph, rows, blob, dims, positions, revision)
        self.refreshes += 1
        return graph

    def _extend(
        self,
        graph: _Held,
        rows: list[tuple[int, str]],
        blob: bytes,
        dims: int,
        dead: Any,
        revision: int,
    ) -> None:
        import numpy as np

        faiss = _faiss()
        faiss.omp_set_num_threads(self.settings.build_threads)
        with graph.lock:  # no search reads the index while it grows
            if rows:
                graph.index.add(_matrix(blob, dims))
                added = np.asarray([r[0] for r in rows], dtype=np.int64)
                graph.ids = np.concatenate([graph.ids, added])
                graph.docs = graph.docs + [r[1] for r in rows]
            graph.selector, graph.held = None, []
            if len(dead):
                batch = faiss.IDSelectorBatch(dead)
                graph.selector, graph.held = faiss.IDSelectorNot(batch), [batch, dead]
            graph.revision = revision


__all__ = ["DEAD_SHARE", "AnnCache", "AnnSettings", "VectorSource"]
