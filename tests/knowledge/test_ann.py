"""``knowledge.ann`` behind both stores: the IVF index answers as the exact scan does on a
seeded set, sees another index instance's writes and deletes by the revision, never returns a
deleted chunk or another workspace's, falls back to the exact scan while cold, and evicts the
least recently searched graph beyond its cap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelgrid.knowledge.ann import AnnCache, AnnSettings
from modelgrid.knowledge.chunking import Chunk
from modelgrid.knowledge.index import KnowledgeIndex
from modelgrid.knowledge.pg_index import PgIndex
from modelgrid.knowledge.sqlite_index import SqliteIndex, sqlite_path
from modelgrid.storage import db
from tests.databases import BOTH_DATABASES
from tests.knowledge.rows import add_documents, add_knowledge_bases

DIMS = 16
PER_DOC = 100
SMALL = AnnSettings(min_vectors=300, max_vectors=10_000, nprobe=64)  # every list: exact


@dataclass
class Store:
    engine: AsyncEngine
    make: Callable[[AnnCache | None], KnowledgeIndex]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    engine = db.create_engine(database_url)
    path = sqlite_path(database_url)

    def make(ann: AnnCache | None) -> KnowledgeIndex:
        # on PostgreSQL, the bytea path: with pgvector, PgIndex searches in the server instead
        return SqliteIndex(path, ann) if path is not None else PgIndex(engine, ann, pgvector=False)

    await add_knowledge_bases(engine, [("ws-a", "kb-1"), ("ws-a", "kb-2"), ("ws-b", "kb-b")])
    yield Store(engine, make)
    await engine.dispose()


def _vectors(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIMS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def _write(
    store: Store, index: KnowledgeIndex, ws: str, kb: str, doc: str, vectors: np.ndarray
) -> None:
    await add_documents(store.engine, ws, kb, [doc])
    chunks = [Chunk("", f"{doc} chunk {i}", 3) for i in range(len(vectors))]
    blobs = [v.tobytes() for v in vectors]
    assert await index.write_document(ws, kb, doc, chunks, blobs, DIMS)


async def _docs_of(store: Store, ids: list[int]) -> set[str]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, document_id FROM knowledge_chunks"))
        doc = {int(r[0]): str(r[1]) for r in rows}
    return {doc[i] for i in ids}


async def _fill(store: Store, index: KnowledgeIndex, docs: int = 6, kb: str = "kb-1") -> None:
    for d in range(docs):
        await _write(store, index, "ws-a", kb, f"{kb}-doc-{d}", _vectors(d, PER_DOC))


@BOTH_DATABASES
async def test_the_graph_answers_as_the_exact_scan_once_built(store: Store) -> None:
    exact, cache = store.make(None), AnnCache(SMALL)
    ann = store.make(cache)
    await _fill(store, exact)
    queries = _vectors(99, 20)
    cold = await ann.dense("ws-a", "kb-1", queries[0].tobytes(), DIMS, 10)
    assert cold == await exact.dense("ws-a", "kb-1", queries[0].tobytes(), DIMS, 10)
    assert cache.served == 0  # the first search ran the exact scan and started the build
    await cache.wait()
    assert (cache.builds, cache.vectors) == (1, 600)
    for q in queries:
        want = await exact.dense("ws-a", "kb-1", q.tobytes(), DIMS, 10)
        got = await ann.dense("ws-a", "kb-1", q.tobytes(), DIMS, 10)
        assert [c for c, _ in got] == [c for c, _ in want]
        assert np.allclose([d for _, d in got], [d for _, d in want], atol=1e-5)
    assert cache.served == 20
    # a document filter keeps the exact scan over those documents
    only = await ann.dense("ws-a", "kb-1", queries[0].tobytes(), DIMS, 5, ["kb-1-doc-3"])
    assert await _docs_of(store, [c for c, _ in only]) == {"kb-1-doc-3"}
    assert cache.served == 20
    await ann.aclose()
    await exact.aclose()


@BOTH_DATABASES
async def test_writes_and_deletes_of_another_instance_are_seen(store: Store) -> None:
    writer, cache = store.make(None), AnnCache(SMALL)
    reader = store.make(cache)
    await _fill(store, writer)
    q = _vectors(99, 1)[0]
    await reader.dense("ws-a", "kb-1", q.tobytes(), DIMS, 10)
    await cache.wait()
    # another gateway writes a document whose first chunk is the query itself
    await _write(store, writer, "ws-a", "kb-1", "kb-1-new", np.stack([q, *_vectors(7, 9)]))
    fresh = await reader.dense("ws-a", "kb-1", q.tobytes(), DIMS, 3)  # stale graph: exact
    assert await _docs_of(store, [fresh[0][0]]) == {"kb-1-new"}
    assert fresh[0][1] == pytest.approx(0.0, abs=1e-6)
    assert cache.served == 0
    await cache.wait()
    assert (cache.builds, cache.refreshes, cache.vectors) == (1, 1, 610)
    again = await reader.dense("ws-a", "kb-1", q.tobytes(), DIMS, 3)
    assert again[0][0] == fresh[0][0] and cache.served == 1
    # ... and deletes it: never returned again, neither by the exact scan nor the graph
    assert await writer.delete_document("ws-a", "kb-1-new")
    for _ in range(2):
        hits = await reader.dense("ws-a", "kb-1", q.tobytes(), DIMS, 50)
        assert "kb-1-new" not in await _docs_of(store, [c for c, _ in hits])
        assert len(hits) == 50
        await cache.wait()
    assert (cache.builds, cache.refreshes, cache.served) == (1, 2, 2)
    # two of six documents gone (> DEAD_SHARE): the graph is rebuilt without them
    for d in (0, 1):
        assert await writer.delete_document("ws-a", f"kb-1-doc-{d}")
    await reader.dense("ws-a", "kb-1", q.tobytes(), DIMS, 50)
    await cache.wait()
    assert (cache.builds, cache.vectors) == (2, 400)
    hits = await reader.dense("ws-a", "kb-1", q.tobytes(), DIMS, 50)
    assert not {"kb-1-doc-0", "kb-1-doc-1"} & await _docs_of(store, [c for c, _ in hits])
    await reader.aclose()
    await writer.aclose()


async def test_a_reused_row_id_gets_its_new_vector(store: Store) -> None:
    """SQLite reuses the highest row id after its row is deleted: the graph tells the new chunk
    from the old one by its document."""
    writer, cache = store.make(None), AnnCache(SMALL)
    reader = store.make(cache)
    await _fill(store, writer)
    q = _vectors(99, 1)[0]
    await reader.dense("ws-a", "kb-1", q.tobytes(), DIMS, 10)
    await cache.wait()
    assert await writer.delete_document("ws-a", "kb-1-doc-5")  # the highest row ids
    await _write(store, writer, "ws-a", "kb-1", "kb-1-again", np.stack([q, *_vectors(8, 99)]))
    await reader.dense("ws-a", "kb-1", q.tobytes(), DIMS, 10)
    await cache.wait()
    [(cid, distance)] = await reader.dense("ws-a", "kb-1", q.tobytes(), DIMS, 1)
    assert cache.served == 1
    assert await _docs_of(store, [cid]) == {"kb-1-again"}
    assert distance == pytest.approx(0.0, abs=1e-6)
    await reader.aclose()
    await writer.aclose()


@BOTH_DATABASES
async def test_another_workspace_gets_nothing_and_small_bases_stay_exact(store: Store) -> None:
    cache = AnnCache(SMALL)
    index = store.make(cache)
    await _fill(store, index)
    await _fill(store, index, docs=2, kb="kb-2")  # 200 chunks: under min_vectors
    q = _vectors(99, 1)[0].tobytes()
    for _ in range(2):
        assert await index.dense("ws-b", "kb-1", q, DIMS, 10) == []
        await cache.wait()
    assert await index.dense("ws-b", "kb-1", q, DIMS, 10) == []  # from its (empty) graph
    assert len(await index.dense("ws-a", "kb-2", q, DIMS, 10)) == 10
    await cache.wait()
    assert not cache.holds("ws-a", "kb-2", DIMS)
    await index.aclose()


@BOTH_DATABASES
async def test_the_least_recently_searched_graph_is_evicted_at_the_cap(store: Store) -> None:
    settings = AnnSettings(min_vectors=300, max_vectors=1000)
    cache = AnnCache(settings)
    index = store.make(cache)
    await _fill(store, index, docs=6)
    await _fill(store, index, docs=5, kb="kb-2")
    q = _vectors(99, 1)[0].tobytes()
    await index.dense("ws-a", "kb-1", q, DIMS, 10)
    await cache.wait()
    assert cache.holds("ws-a", "kb-1", DIMS) and cache.vectors == 600
    await index.dense("ws-a", "kb-2", q, DIMS, 10)
    await cache.wait()
    assert not cache.holds("ws-a", "kb-1", DIMS) and cache.holds("ws-a", "kb-2", DIMS)
    assert cache.vectors == 500
    await index.aclose()
