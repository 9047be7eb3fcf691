"""``PgIndex.lexical`` ranks by BM25 (``knowledge.pg_bm25``) on the real PostgreSQL at
127.0.0.1:5432, its statistics kept by writes and deletes, per knowledge base and workspace.

The corpus: five one-chunk documents, lengths in lexeme occurrences (``to_tsvector
('english')``): "refund refund policy" 3 ('refund' x2, 'polici'), "shipping policy" 2,
"refund window" 2, "warranty terms apply" 3, "delivery times vary" 3 — N = 5, avgdl = 13/5.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelgrid.knowledge.chunking import Chunk
from modelgrid.knowledge.pg_index import PgIndex
from modelgrid.storage import db, migrate
from tests.databases import postgres_database
from tests.knowledge.rows import add_documents, add_knowledge_bases

pytestmark = pytest.mark.postgres

BEFORE = "0015"  # the revision before migrations/versions/0016_knowledge_pg_bm25.py
OLD_TEXT_TABLE = (  # knowledge_pg_text as knowledge.pg_index made it before BM25
    "CREATE TABLE knowledge_pg_text (chunk_id bigint PRIMARY KEY, "
    "knowledge_base_id varchar(40) NOT NULL, tsv tsvector NOT NULL)"
)

DOCS = {
    "d1": "refund refund policy",
    "d2": "shipping policy",
    "d3": "refund window",
    "d4": "warranty terms apply",
    "d5": "delivery times vary",
}


def bm25_term(tf: int, length: int, avgdl: float, idf: float) -> float:
    """One term's BM25 share, k1 = 1.2, b = 0.75 (the formula, written out once more)."""
    return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avgdl))


async def add(engine: AsyncEngine, ws: str, kb: str, docs: list[str]) -> None:
    """The workspace and knowledge base (once) and documents in ``indexing``."""
    await add_knowledge_bases(engine, [(ws, kb)])
    await add_documents(engine, ws, kb, docs)


async def write(index: PgIndex, ws: str, kb: str, doc: str, words: str) -> None:
    assert await index.write_document(ws, kb, doc, [Chunk("", words, 3)], [b"\0" * 8], 2)


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    eng = db.create_engine(pg_url)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def index(engine: AsyncEngine) -> PgIndex:
    """Workspace ``ws-a``, knowledge base ``kb-a`` with the five documents written."""
    index = PgIndex(engine)
    await add(engine, "ws-a", "kb-a", list(DOCS))
    for doc, words in DOCS.items():
        await write(index, "ws-a", "kb-a", doc, words)
    return index


async def ids_by_doc(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT document_id, id FROM knowledge_chunks"))
        return {str(d): int(c) for d, c in rows}


async def test_scores_are_bm25_computed_by_hand(engine: AsyncEngine, index: PgIndex) -> None:
    ids = await ids_by_doc(engine)
    idf_refund = math.log((5 - 2 + 0.5) / (2 + 0.5))  # in 2 of 5 chunks: ln 1.4
    idf_window = math.log((5 - 1 + 0.5) / (1 + 0.5))  # in 1 of 5: ln 3
    c3 = bm25_term(1, 2, 2.6, idf_refund) + bm25_term(1, 2, 2.6, idf_window)
    c1 = bm25_term(2, 3, 2.6, idf_refund)
    assert round(c3, 9) == 1.584687931 and round(c1, 9) == 0.443461104  # by hand, once
    got = await index.lexical("ws-a", "kb-a", "the refund window?", 10)
    assert [cid for cid, _ in got] == [ids["d3"], ids["d1"]]
    assert [round(s, 9) for _, s in got] == [1.584687931, 0.443461104]
    # an attribute filter keeps the knowledge base's statistics, only fewer chunks
    only = await index.lexical("ws-a", "kb-a", "refund window", 10, documents=["d1", "d2"])
    assert [(cid, round(s, 9)) for cid, s in only] == [(ids["d1"], 0.443461104)]
    assert await index.lexical("ws-a", "kb-a", "refund window", 1) == got[:1]
    # a lexeme in more than half the chunks weighs FTS5's floor, 1e-6, not a negative IDF
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE knowledge_pg_stats SET chunks = 3, length = 8"))
    got = await index.lexical("ws-a", "kb-a", "refund", 10)
    assert [(cid, round(s, 12)) for cid, s in got] == [
        (ids["d1"], round(bm25_term(2, 3, 8 / 3, 1e-6), 12)),
        (ids["d3"], round(bm25_term(1, 2, 8 / 3, 1e-6), 12)),
    ]
    assert await index.lexical("ws-a", "kb-a", "the of and", 10) == []  # stop words only


async def test_stats_follow_writes_and_deletes(engine: AsyncEngine, index: PgIndex) -> None:
    async def stats() -> tuple[list[tuple[str, int, int]], dict[str, int]]:
        async with engine.connect() as conn:
            kb = (await conn.execute(text("SELECT * FROM knowledge_pg_stats"))).all()
            terms = await conn.execute(text("SELECT lexeme, chunks FROM knowledge_pg_terms"))
            return [tuple(r) for r in kb], {str(lx): int(n) for lx, n in terms}

    kb, terms = await stats()
    assert kb == [("kb-a", 5, 13)]
    assert terms == {
        "refund": 2, "polici": 2, "ship": 1, "window": 1, "warranti": 1, "term": 1,
        "appli": 1, "deliveri": 1, "time": 1, "vari": 1,
    }  # fmt: skip
    assert await index.delete_document("ws-a", "d3")
    kb, terms = await stats()
    assert kb == [("kb-a", 4, 11)]
    assert terms["refund"] == 1 and "window" not in terms
    ids = await ids_by_doc(engine)
    idf = math.log((4 - 1 + 0.5) / (1 + 0.5))
    got = await index.lexical("ws-a", "kb-a", "refund window", 10)
    assert [(cid, round(s, 9)) for cid, s in got] == [
        (ids["d1"], round(bm25_term(2, 3, 11 / 4, idf), 9))
    ]
    assert round(got[0][1], 9) == 1.135989375
    assert await index.delete_knowledge_base("ws-a", "kb-a")
    assert await stats() == ([], {})


async def test_workspaces_and_knowledge_bases_keep_their_own_statistics(
    engine: AsyncEngine, index: PgIndex
) -> None:
    ids = await ids_by_doc(engine)
    # another workspace's knowledge base full of 'refund' changes nothing for kb-a
    await add(engine, "ws-b", "kb-b", ["b1", "b2", "b3"])
    for doc in ("b1", "b2", "b3"):
        await write(index, "ws-b", "kb-b", doc, "refund refund refund")
    idf_refund = math.log(1.4)
    got = await index.lexical("ws-a", "kb-a", "refund", 10)
    assert [(cid, round(s, 9)) for cid, s in got] == [
        (ids["d1"], round(bm25_term(2, 3, 2.6, idf_refund), 9)),
        (ids["d3"], round(bm25_term(1, 2, 2.6, idf_refund), 9)),
    ]
    # a foreign knowledge base id returns nothing, and deleting it from ws-a drops nothing
    assert await index.lexical("ws-a", "kb-b", "refund", 10) == []
    assert await index.lexical("ws-b", "kb-a", "refund", 10) == []
    assert not await index.delete_knowledge_base("ws-a", "kb-b")
    assert not await index.delete_document("ws-a", "b1")
    async with engine.connect() as conn:
        kb = (await conn.execute(text("SELECT * FROM knowledge_pg_stats ORDER BY 1"))).all()
        refund = (
            await conn.execute(
                text("SELECT chunks FROM knowledge_pg_terms WHERE knowledge_base_id = 'kb-b'")
            )
        ).scalar_one()
    assert [tuple(r) for r in kb] == [("kb-a", 5, 13), ("kb-b", 3, 9)]
    assert refund == 3  # its one lexeme, in each of its three chunks


async def test_migration_backfills_an_index_an_earlier_version_made() -> None:
    """A database one revision back whose index has the old ``knowledge_pg_text`` (no length,
    no statistics) ranks by BM25 after ``upgrade``, with the figures of a fresh index."""
    with postgres_database(migrated=False) as url:
        await asyncio.to_thread(migrate.upgrade, url, BEFORE)
        eng = db.create_engine(url)
        try:
            await add(eng, "ws-a", "kb-a", list(DOCS))
            async with eng.begin() as conn:
                await conn.execute(text(OLD_TEXT_TABLE))
                for doc, words in DOCS.items():
                    await conn.execute(
                        text(
                            "WITH c AS (INSERT INTO knowledge_chunks (workspace_id, "
                            "knowledge_base_id, document_id, ordinal, heading, text, tokens) "
                            "VALUES ('ws-a', 'kb-a', :d, 0, '', :t, 3) RETURNING id) "
                            "INSERT INTO knowledge_pg_text SELECT id, 'kb-a', "
                            "to_tsvector('english', :t) FROM c"
                        ),
                        {"d": doc, "t": words},
                    )
            await asyncio.to_thread(migrate.upgrade, url)
            ids = await ids_by_doc(eng)
            got = await PgIndex(eng).lexical("ws-a", "kb-a", "refund window", 10)
            assert [(cid, round(s, 9)) for cid, s in got] == [
                (ids["d3"], 1.584687931),
                (ids["d1"], 0.443461104),
            ]
        finally:
            await eng.dispose()
