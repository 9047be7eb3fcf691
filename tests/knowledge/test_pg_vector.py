"""Dense search through pgvector behind ``PgIndex`` on the real PostgreSQL at 127.0.0.1:5432
(pgvector installed by scripts/pgvector.sh; CI fails rather than skips without it):

- the exact scan in the server answers as the numpy scan over the ``bytea`` (same ids in the
  same order, distances to 1e-6), with and without a documents filter, for a ``k`` past the
  knowledge base's size;
- the HNSW path (the plan uses the width's index) answers ``k`` rows of the knowledge base
  only — never another workspace's identical chunks — with a documents filter too (one that
  keeps fewer than ``hnsw_min_chunks`` chunks: the exact scan), and finds the exact top 10
  of each query;
- with the process's IVF index (``knowledge.ann``), it answers once built, HNSW before that
  and for a documents filter;
- a deleted document's vectors are gone from the table and from the answers;
- without pgvector (``pgvector=False`` on a database without the extension) the ``bytea``
  path answers; a later index with pgvector adds the column and backfills it, and fills the
  rows an older process wrote without it at its first use.

The corpus (seeded, 16 dims): 3 documents of 100 chunks in ``ws-a``'s ``kb-1``, the same
vectors in ``ws-b``'s ``kb-b`` (another workspace), 100 others in ``ws-a``'s ``kb-2``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import numpy as np
import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelgrid.knowledge import pg_vector
from modelgrid.knowledge.ann import AnnCache, AnnSettings
from modelgrid.knowledge.chunking import Chunk
from modelgrid.knowledge.pg_index import PgIndex
from modelgrid.knowledge.pg_vector import PgVectorSettings
from modelgrid.storage import db
from tests.knowledge.rows import add_documents, add_knowledge_bases

pytestmark = pytest.mark.postgres

DIMS = 16
HNSW = PgVectorSettings(hnsw_min_chunks=200, ef_search=64)


def vectors(seed: int, n: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIMS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    eng = db.create_engine(pg_url)
    await add_knowledge_bases(eng, [("ws-a", "kb-1"), ("ws-a", "kb-2"), ("ws-b", "kb-b")])
    try:
        yield eng
    finally:
        await eng.dispose()


async def write(
    engine: AsyncEngine, index: PgIndex, ws: str, kb: str, doc: str, vecs: np.ndarray
) -> None:
    await add_documents(engine, ws, kb, [doc])
    chunks = [Chunk("", f"{doc} {i}", 2) for i in range(len(vecs))]
    assert await index.write_document(ws, kb, doc, chunks, [v.tobytes() for v in vecs], DIMS)


async def corpus(engine: AsyncEngine, index: PgIndex) -> None:
    for no in range(3):
        await write(engine, index, "ws-a", "kb-1", f"doc-{no}", vectors(no, 100))
        await write(engine, index, "ws-b", "kb-b", f"other-{no}", vectors(no, 100))
    await write(engine, index, "ws-a", "kb-2", "doc-kb2", vectors(9, 100))


async def owners(engine: AsyncEngine, ids: list[int]) -> set[tuple[str, str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, workspace_id, knowledge_base_id, document_id FROM knowledge_chunks")
        )
        by_id = {int(r[0]): (str(r[1]), str(r[2]), str(r[3])) for r in rows}
    return {by_id[i] for i in ids}


def same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [c for c, _ in got] == [c for c, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert math.isclose(a, b, abs_tol=1e-6), (a, b)


QUERIES = vectors(42, 8)


async def test_the_exact_scan_in_the_server_answers_as_numpy(engine: AsyncEngine) -> None:
    server = PgIndex(engine)  # pgvector where the server has it: this one does
    await corpus(engine, server)
    assert server.pgvector
    numpy_scan = PgIndex(engine, pgvector=False)
    for q in QUERIES:
        for k, docs, n in ((10, None, 10), (400, None, 300), (7, ["doc-1", "doc-2"], 7)):
            got = await server.dense("ws-a", "kb-1", q.tobytes(), DIMS, k, docs)
            assert not numpy_scan.pgvector
            same(got, await numpy_scan.dense("ws-a", "kb-1", q.tobytes(), DIMS, k, docs))
            assert len(got) == n
        assert await server.dense("ws-a", "kb-1", q.tobytes(), DIMS, 5, ["doc-kb2"]) == []
    # a chunk's own vector is at distance 0 (float32 through the text literal, unchanged)
    own = vectors(1, 100)[17]
    best = await server.dense("ws-a", "kb-1", own.tobytes(), DIMS, 1)
    assert await owners(engine, [best[0][0]]) == {("ws-a", "kb-1", "doc-1")}
    assert abs(best[0][1]) < 1e-6


async def test_hnsw_answers_k_rows_of_the_knowledge_base_only(engine: AsyncEngine) -> None:
    index = PgIndex(engine, vector_settings=HNSW)
    await corpus(engine, index)
    exact = PgIndex(engine, pgvector=False)
    # the plan: the width's HNSW index, with the workspace and documents filters after it
    for docs in (None, ["doc-1", "doc-2"]):
        sql = pg_vector.hnsw_sql(DIMS, docs is not None)
        stmt = text("EXPLAIN " + sql)
        if docs is not None:
            stmt = stmt.bindparams(bindparam("docs", expanding=True))
        q = pg_vector.literal(QUERIES[0].tobytes())
        async with engine.begin() as conn:
            await conn.execute(text(pg_vector.SCAN_SETTINGS), {"ef": "64", "mst": "20000"})
            args = {"q": q, "kb": "kb-1", "ws": "ws-a", "k": 5, **({"docs": docs} if docs else {})}
            plan = "\n".join(str(r[0]) for r in await conn.execute(stmt, args))
        assert f"Index Scan using {pg_vector.index_name(DIMS)}" in plan, plan
    found = 0
    for q in QUERIES:
        served = index.hnsw_served
        hits = await index.dense("ws-a", "kb-1", q.tobytes(), DIMS, 50)
        assert len(hits) == 50
        assert hits == sorted(hits, key=lambda h: (h[1], h[0]))
        assert {o[:2] for o in await owners(engine, [c for c, _ in hits])} == {("ws-a", "kb-1")}
        want = await exact.dense("ws-a", "kb-1", q.tobytes(), DIMS, 10)
        found += len({c for c, _ in want} & {c for c, _ in hits[:10]})
        two = await index.dense("ws-a", "kb-1", q.tobytes(), DIMS, 50, ["doc-1", "doc-2"])
        assert len(two) == 50  # 200 chunks: HNSW
        assert {o[2] for o in await owners(engine, [c for c, _ in two])} <= {"doc-1", "doc-2"}
        only = await index.dense("ws-a", "kb-1", q.tobytes(), DIMS, 20, ["doc-2"])
        assert len(only) == 20  # 100 chunks: the exact scan
        assert index.hnsw_served == served + 2
        assert await owners(engine, [c for c, _ in only]) == {("ws-a", "kb-1", "doc-2")}
        same(only, await exact.dense("ws-a", "kb-1", q.tobytes(), DIMS, 20, ["doc-2"]))
        theirs = await index.dense("ws-b", "kb-b", q.tobytes(), DIMS, 50)
        assert {o[:2] for o in await owners(engine, [c for c, _ in theirs])} == {("ws-b", "kb-b")}
        assert await index.dense("ws-b", "kb-1", q.tobytes(), DIMS, 50) == []
    assert found == 10 * len(QUERIES)


async def test_the_process_ivf_index_first_pgvector_while_it_builds(engine: AsyncEngine) -> None:
    ann = AnnCache(AnnSettings(min_vectors=300, max_vectors=10_000, nprobe=64))
    index = PgIndex(engine, ann, vector_settings=HNSW)
    await corpus(engine, index)
    exact = PgIndex(engine, pgvector=False)
    q = QUERIES[5].tobytes()
    want = await exact.dense("ws-a", "kb-1", q, DIMS, 10)
    same(await index.dense("ws-a", "kb-1", q, DIMS, 10), want)  # cold: HNSW, the build started
    assert (index.hnsw_served, ann.served) == (1, 0)
    await ann.wait()
    same(await index.dense("ws-a", "kb-1", q, DIMS, 10), want)  # the IVF index (every list)
    assert (index.hnsw_served, ann.served) == (1, 1)
    got = await index.dense("ws-a", "kb-1", q, DIMS, 10, ["doc-0", "doc-1"])  # a filter: HNSW
    assert (index.hnsw_served, ann.served) == (2, 1)
    same(got, await exact.dense("ws-a", "kb-1", q, DIMS, 10, ["doc-0", "doc-1"]))
    await index.aclose()


async def test_a_deleted_documents_vectors_are_gone(engine: AsyncEngine) -> None:
    index = PgIndex(engine, vector_settings=HNSW)
    await corpus(engine, index)
    own = vectors(1, 100)[5].tobytes()
    assert await owners(engine, [(await index.dense("ws-a", "kb-1", own, DIMS, 1))[0][0]]) == {
        ("ws-a", "kb-1", "doc-1")
    }
    assert await index.delete_document("ws-a", "doc-1")
    async with engine.connect() as conn:
        left = await conn.scalar(
            text("SELECT count(*) FROM knowledge_pg_vectors WHERE knowledge_base_id = 'kb-1'")
        )
    assert left == 200
    hits = await index.dense("ws-a", "kb-1", own, DIMS, 50)
    assert len(hits) == 50
    assert {o[2] for o in await owners(engine, [c for c, _ in hits])} <= {"doc-0", "doc-2"}
    assert hits[0][1] > 1e-3  # its own vector is gone
    assert await index.delete_knowledge_base("ws-a", "kb-1")
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM knowledge_pg_vectors")) == 400


async def test_without_pgvector_the_bytea_path_answers_then_a_backfill(
    engine: AsyncEngine,
) -> None:
    plain = PgIndex(engine, pgvector=False)
    await corpus(engine, plain)
    assert not plain.pgvector
    async with engine.connect() as conn:
        assert (
            await conn.scalar(text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'"))
            == 0
        )
        assert await conn.scalar(text(pg_vector.HAS_COLUMN)) is None
    q = QUERIES[3].tobytes()
    before = await plain.dense("ws-a", "kb-1", q, DIMS, 10)
    assert len(before) == 10
    # an index with pgvector on the same database: the extension, the column, backfilled
    server = PgIndex(engine)
    same(await server.dense("ws-a", "kb-1", q, DIMS, 10), before)
    assert server.pgvector
    async with engine.connect() as conn:
        assert (
            await conn.scalar(text("SELECT count(*) FROM knowledge_pg_vectors WHERE vec IS NULL"))
            == 0
        )
        assert await conn.scalar(text("SELECT count(*) FROM knowledge_pg_vectors")) == 700
    # rows a process from before the column wrote meanwhile: filled at the next first use
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE knowledge_pg_vectors SET vec = NULL WHERE chunk_id % 3 = 0")
        )
    later = PgIndex(engine)
    same(await later.dense("ws-a", "kb-1", q, DIMS, 10), before)
    async with engine.connect() as conn:
        assert (
            await conn.scalar(text("SELECT count(*) FROM knowledge_pg_vectors WHERE vec IS NULL"))
            == 0
        )
