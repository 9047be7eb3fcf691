"""BM25 on SQLite with per-knowledge-base statistics: the tokenizer equals FTS5's on the bench
corpus; both paths (FTS5's candidates scored from ``knowledge_fts_stats``, and
``knowledge.lexical``'s postings) give the scores FTS5's own ``bm25()`` gives over a table
holding the knowledge base alone; another workspace's documents change nothing; the postings
follow writes and deletes by the revision; the statistics tables stay exact."""

from __future__ import annotations

import collections
import math
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from modelgrid.knowledge import fts_stats, fts_tokens
from modelgrid.knowledge.chunking import Chunk
from modelgrid.knowledge.lexical import LexicalCache, LexicalSettings
from modelgrid.knowledge.sqlite_index import SqliteIndex, fts_query, query_tokens, sqlite_path
from modelgrid.storage import db
from tests.knowledge.rows import add_documents, add_knowledge_bases

DIMS = 4
VECTOR = b"\x00\x00\x80\x3f" * DIMS  # 1.0f each: the vectors play no part here
DOCS = {
    # document: (workspace, knowledge base, chunks)
    "a1": (
        "ws-a",
        "kb-a",
        [
            "refund policy: a refund is granted within 30 days",
            "shipping takes five days, refunds take ten",
            "refund refund refund for damaged goods",
            "the warranty covers parts, not shipping",
        ],
    ),
    "a2": ("ws-a", "kb-a", ["returns are possible within 30 days", "granted refunds are final"]),
}
OTHER = [f"refund granted {i} days shipping" for i in range(40)]  # ws-b's knowledge base
QUERIES = ["refund granted days", "shipping warranty", "possibly returned refunds", "days"]


@dataclass
class Store:
    engine: AsyncEngine
    path: Path


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    path = sqlite_path(database_url)
    if path is None:
        pytest.skip("SQLite's index")
    engine = db.create_engine(database_url)
    await add_knowledge_bases(engine, [("ws-a", "kb-a"), ("ws-b", "kb-b")])
    yield Store(engine, path)
    await engine.dispose()


async def _write(
    store: Store, index: SqliteIndex, doc: str, ws: str, kb: str, texts: list[str]
) -> None:
    await add_documents(store.engine, ws, kb, [doc])
    chunks = [Chunk("", t, 9) for t in texts]
    assert await index.write_document(ws, kb, doc, chunks, [VECTOR] * len(texts), DIMS)


def _fts5_alone(path: Path, kb: str, query: str) -> list[tuple[int, float]]:
    """FTS5's own ``bm25()`` over a fresh table holding only ``kb``'s chunks (same rowids):
    the scores a knowledge base's own statistics give."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT f.rowid, f.text, f.kb FROM knowledge_fts f "
            "JOIN knowledge_chunks c ON c.id = f.rowid WHERE c.knowledge_base_id = ?",
            (kb,),
        ).fetchall()
    alone = sqlite3.connect(":memory:")
    alone.execute("CREATE VIRTUAL TABLE t USING fts5(text, kb, tokenize='porter unicode61')")
    alone.executemany("INSERT INTO t (rowid, text, kb) VALUES (?, ?, ?)", rows)
    match = fts_query(query)
    got = alone.execute(
        "SELECT rowid, -bm25(t, 1.0, 0.0) AS s FROM t WHERE t MATCH ? ORDER BY s DESC, rowid",
        (f"text : ({match})",),
    ).fetchall()
    return [(int(r), float(s)) for r, s in got]


def _same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [c for c, _ in got] == [c for c, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-15)


def test_tokens_equal_fts5s_own_over_the_bench_corpus() -> None:
    from pydoc_data.topics import topics

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE f USING fts5(text, tokenize='porter unicode61')")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, instance)")
    texts = [topics[name] for name in sorted(topics)]
    conn.executemany("INSERT INTO f (rowid, text) VALUES (?, ?)", list(enumerate(texts, 1)))
    theirs: dict[int, list[tuple[int, str]]] = collections.defaultdict(list)
    for term, doc, offset in conn.execute("SELECT term, doc, offset FROM v"):
        theirs[doc].append((offset, term))
    total = 0
    for doc, body in enumerate(texts, 1):
        mine = fts_tokens.terms(body)
        assert mine == [t for _, t in sorted(theirs[doc])], sorted(topics)[doc - 1]
        total += len(mine)
    assert total == 65_673  # the corpus of CPython 3.11's pydoc_data
    # beyond the corpus: diacritics composed and combining, private use, digits of other
    # scripts, letter numbers, symbols and ``_`` separating
    odd = "cafe\u0301 na\u00efve \ue000x\ue001 x\u00b2y a+b \u00c5ngstr\u00f6m foo_bar \u0660\u0661 \u2160"
    conn.execute("INSERT INTO f (rowid, text) VALUES (?, ?)", (len(texts) + 1, odd))
    got = conn.execute("SELECT term FROM v WHERE doc = ? ORDER BY offset", (len(texts) + 1,))
    assert fts_tokens.terms(odd) == [r[0] for r in got]
    assert fts_tokens.terms(odd)[:2] == ["cafe", "naiv"]
    # FTS5's stemmer is Porter's C version: ``bli`` -> ``ble``, ``logi`` -> ``log``
    assert fts_tokens.terms("possibly analogies café Ünïcode x_y a") == [
        "possibl",
        "analog",
        "cafe",
        "unicod",
        "x",
        "y",
        "a",
    ]


def test_query_tokens_split_words_as_fts5_does() -> None:
    assert query_tokens("The sys_path of __init__, and the Café") == ["sys", "path", "init", "cafe"]
    assert fts_query("the sys_path") == '"sys" OR "path"'
    assert query_tokens("the and") == ["the", "and"]  # only stop words: kept
    assert query_tokens("¿?") == []


async def test_both_paths_score_as_fts5_over_the_knowledge_base_alone(store: Store) -> None:
    cache = LexicalCache(LexicalSettings(min_chunks=1))
    plain, fast = SqliteIndex(store.path), SqliteIndex(store.path, lexical=cache)
    for doc, (ws, kb, texts) in DOCS.items():
        await _write(store, plain, doc, ws, kb, texts)
    await _write(store, plain, "b1", "ws-b", "kb-b", OTHER)
    assert await fast.lexical("ws-a", "kb-a", QUERIES[0], 10) == await plain.lexical(
        "ws-a", "kb-a", QUERIES[0], 10
    )  # cold: the FTS5 path, while the postings build
    await cache.wait()
    for query in QUERIES:
        want = _fts5_alone(store.path, "kb-a", query)
        assert want  # every query matches
        _same(await plain.lexical("ws-a", "kb-a", query, 10), want)
        _same(await fast.lexical("ws-a", "kb-a", query, 10), want)
        _same(await fast.lexical("ws-a", "kb-a", query, 2), want[:2])
    assert (cache.builds, cache.served) == (1, 2 * len(QUERIES))
    # "refund granted days" by hand, from kb-a's 6 chunks (total length 44) alone: 'grant' is
    # in 2 (IDF ln(4.5 / 2.5)); 'refund' in 4 and 'dai' in 3 (IDF floored at 1e-6); the short
    # 'granted refunds are final' (|D| 5) beats chunk 1 (|D| 10, 'refund' twice, 'days')
    hits = await plain.lexical("ws-a", "kb-a", "refund granted days", 3)
    grant = math.log(4.5 / 2.5) * 2.2
    assert [c for c, _ in hits] == [6, 1, 2]
    assert hits[0][1] == pytest.approx(grant / (1 + 1.2 * (0.25 + 0.75 * 5 * 6 / 44)), abs=1e-5)
    assert hits[1][1] == pytest.approx(grant / (1 + 1.2 * (0.25 + 0.75 * 10 * 6 / 44)), abs=1e-5)
    assert hits[2][1] < 1e-5  # 'refunds' and 'days': floored IDFs only
    # only the named documents' chunks, scored with the whole knowledge base's statistics
    only = await plain.lexical("ws-a", "kb-a", "refund granted days", 10, documents=["a2"])
    assert only == [
        h for h in await plain.lexical("ws-a", "kb-a", "refund granted days", 10) if h[0] in (5, 6)
    ]
    assert await fast.lexical("ws-a", "kb-a", "refund granted days", 10, documents=["a2"]) == only
    # another workspace's knowledge base: nothing of it
    assert await plain.lexical("ws-b", "kb-a", "refund", 10) == []
    assert await fast.lexical("ws-b", "kb-a", "refund", 10) == []
    await cache.wait()
    assert await fast.lexical("ws-b", "kb-a", "refund", 10) == []
    await plain.aclose()
    await fast.aclose()


async def test_another_workspaces_documents_change_no_score(store: Store) -> None:
    cache = LexicalCache(LexicalSettings(min_chunks=1))
    plain, fast = SqliteIndex(store.path), SqliteIndex(store.path, lexical=cache)
    for doc, (ws, kb, texts) in DOCS.items():
        await _write(store, plain, doc, ws, kb, texts)
    await fast.lexical("ws-a", "kb-a", "days", 10)
    await cache.wait()
    before = {q: await plain.lexical("ws-a", "kb-a", q, 10) for q in QUERIES}
    assert before == {q: await fast.lexical("ws-a", "kb-a", q, 10) for q in QUERIES}
    await _write(store, plain, "b1", "ws-b", "kb-b", OTHER)
    await _write(store, plain, "b2", "ws-b", "kb-b", ["days " * 50, "possibly possibly"])
    # FTS5's own bm25() over the shared table moves (the statistics of every base pooled) ...
    with sqlite3.connect(store.path) as conn:
        pooled = conn.execute(
            "SELECT rowid, -bm25(knowledge_fts, 1.0, 0.0) FROM knowledge_fts "
            "WHERE knowledge_fts MATCH ? AND rowid IN (1, 2, 3, 4, 5, 6) ORDER BY rowid",
            (f"text : ({fts_query('days')})",),
        ).fetchall()
    assert [s for _, s in pooled] != [s for _, s in sorted(before["days"])]
    # ... these do not
    for query in QUERIES:
        assert await plain.lexical("ws-a", "kb-a", query, 10) == before[query]
        assert await fast.lexical("ws-a", "kb-a", query, 10) == before[query]
    assert cache.builds == 1  # kb-a's revision never moved
    await plain.aclose()
    await fast.aclose()


async def test_the_postings_follow_writes_and_deletes(store: Store) -> None:
    cache = LexicalCache(LexicalSettings(min_chunks=1))
    plain, fast = SqliteIndex(store.path), SqliteIndex(store.path, lexical=cache)
    await _write(store, plain, "a1", "ws-a", "kb-a", DOCS["a1"][2])
    await fast.lexical("ws-a", "kb-a", "days", 10)
    await cache.wait()
    await _write(store, plain, "a2", "ws-a", "kb-a", DOCS["a2"][2])  # by the other instance
    assert await fast.lexical("ws-a", "kb-a", "days", 10) == await plain.lexical(
        "ws-a", "kb-a", "days", 10
    )  # stale: the FTS5 path, while it refreshes
    await cache.wait()
    assert (cache.builds, cache.refreshes) == (1, 1)
    for query in QUERIES:
        _same(await fast.lexical("ws-a", "kb-a", query, 10), _fst(store, query))
    assert await plain.delete_document("ws-a", "a1")
    await fast.lexical("ws-a", "kb-a", "days", 10)
    await cache.wait()
    assert (cache.builds, cache.refreshes) == (2, 1)  # 4 of 6 dead: rebuilt
    for query in QUERIES:
        want = _fst(store, query)
        assert all(c in (5, 6) for c, _ in want)
        _same(await fast.lexical("ws-a", "kb-a", query, 10), want)
        _same(await plain.lexical("ws-a", "kb-a", query, 10), want)
    await plain.aclose()
    await fast.aclose()


def _fst(store: Store, query: str) -> list[tuple[int, float]]:
    return _fts5_alone(store.path, "kb-a", query)


async def test_the_statistics_tables_follow_writes_and_deletes(store: Store) -> None:
    index = SqliteIndex(store.path)
    for doc, (ws, kb, texts) in DOCS.items():
        await _write(store, index, doc, ws, kb, texts)
    await _write(store, index, "b1", "ws-b", "kb-b", OTHER)

    def stats() -> dict[str, tuple[int, int]]:
        with sqlite3.connect(store.path) as conn:
            rows = conn.execute("SELECT knowledge_base_id, chunks, length FROM knowledge_fts_stats")
            return {r[0]: (r[1], r[2]) for r in rows}

    def terms(cid: int) -> tuple[int, str]:
        with sqlite3.connect(store.path) as conn:
            row = conn.execute(
                "SELECT length, terms FROM knowledge_fts_terms WHERE chunk_id = ?", (cid,)
            ).fetchone()
        return (int(row[0]), str(row[1]))

    # |D| as FTS5 counts it: the text's 9 tokens and the kb column's one
    assert terms(1) == (10, " refund:2 polici:1 a:1 is:1 grant:1 within:1 30:1 dai:1 ")
    assert fts_stats.tf(terms(3)[1], "refund") == 3 and fts_stats.tf(terms(3)[1], "fund") == 0
    # 'refund policy: a refund is granted within 30 days' 10, 'shipping takes five days,
    # refunds take ten' 8, 'refund refund refund for damaged goods' 7, 'the warranty covers
    # parts, not shipping' 7; 'returns are possible within 30 days' 7, 'granted refunds are
    # final' 5
    assert stats() == {"kb-a": (6, 44), "kb-b": (40, 40 * 6)}
    assert await index.delete_document("ws-a", "a1")
    assert stats() == {"kb-a": (2, 12), "kb-b": (40, 240)}
    assert await index.delete_document("ws-b", "a2") is False  # not ws-b's
    assert await index.delete_knowledge_base("ws-b", "kb-b")
    assert stats() == {"kb-a": (2, 12)}
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT count(*) FROM knowledge_fts_terms").fetchone() == (2,)
    await index.aclose()


async def test_a_small_delete_is_masked_out_of_the_postings_and_their_statistics(
    store: Store,
) -> None:
    cache = LexicalCache(LexicalSettings(min_chunks=1))
    plain, fast = SqliteIndex(store.path), SqliteIndex(store.path, lexical=cache)
    await _write(store, plain, "a1", "ws-a", "kb-a", DOCS["a1"][2])
    await _write(store, plain, "c1", "ws-a", "kb-a", [f"days {i} of shipping" for i in range(20)])
    await fast.lexical("ws-a", "kb-a", "days", 10)
    await cache.wait()
    await _write(store, plain, "a2", "ws-a", "kb-a", DOCS["a2"][2])  # a second segment
    await fast.lexical("ws-a", "kb-a", "days", 10)
    await cache.wait()
    assert await plain.delete_document("ws-a", "a2")  # 2 of 26 dead: masked, not rebuilt
    await fast.lexical("ws-a", "kb-a", "days", 10)
    await cache.wait()
    assert (cache.builds, cache.refreshes) == (1, 2)
    for query in QUERIES:
        want = _fst(store, query)
        assert not any(c in (25, 26) for c, _ in want)  # a2's chunks
        _same(await fast.lexical("ws-a", "kb-a", query, 50), want)
        _same(await fast.lexical("ws-a", "kb-a", query, 3), want[:3])
    assert await fast.lexical("ws-a", "kb-a", "granted", 10, documents=["a2"]) == []
    await plain.aclose()
    await fast.aclose()
