"""``knowledge.lexical``'s postings behind ``PgIndex`` on the real PostgreSQL at
127.0.0.1:5432: once built, they rank as ``pg_bm25.rank_sql`` does (same ids, scores to 1e-9
relative) with and without a documents filter, after a delete (masked) and after a new
document (a new segment), each seen by the revision; a repeated query word counts once, as in
``rank_sql``; another workspace gets nothing of the knowledge base.

The corpus (seeded): 6 documents of 10 chunks in ``kb-a`` (60 chunks, postings from 20), 30
lookalike chunks in ``ws-b``'s ``kb-b``; each chunk 5..40 words drawn from a small vocabulary
with words sharing a stem (``refund``/``refunds``/``refunding``) and stop words, some with a
heading (which is searchable too).
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelgrid.knowledge.chunking import Chunk
from modelgrid.knowledge.lexical import LexicalCache, LexicalSettings
from modelgrid.knowledge.pg_index import PgIndex
from modelgrid.storage import db
from tests.knowledge.rows import add_documents, add_knowledge_bases

pytestmark = pytest.mark.postgres

VOCAB = [
    "refund",
    "refunds",
    "refunding",
    "policy",
    "shipping",
    "ship",
    "warranty",
    "parts",
    "days",
    "weeks",
    "delivery",
    "courier",
    "parcel",
    "damaged",
    "goods",
    "invoice",
    "payment",
    "card",
    "bank",
    "transfer",
    "account",
    "the",
    "of",
    "and",
    "to",
    "is",
    "a",
    "not",
    "final",
    "granted",
    "window",
    "returns",
    "return",
]
QUERIES = [
    "refund policy",
    "refund refunds refunding window",  # one lexeme 'refund', counted once
    "damaged parcel courier days",
    "the bank transfer of a payment invoice account",
    "warranty",
    "zebra granted",  # a word no chunk holds
]
SETTINGS = LexicalSettings(min_chunks=20)


def texts(seed: int, n: int) -> list[Chunk]:
    rng = random.Random(seed)
    return [
        Chunk(
            rng.choice(["", "", "Refund policy", "Shipping"]),
            " ".join(rng.choices(VOCAB, k=rng.randint(5, 40))),
            9,
        )
        for _ in range(n)
    ]


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    eng = db.create_engine(pg_url)
    await add_knowledge_bases(eng, [("ws-a", "kb-a"), ("ws-b", "kb-b")])
    try:
        yield eng
    finally:
        await eng.dispose()


async def write(engine: AsyncEngine, index: PgIndex, ws: str, kb: str, doc: str, seed: int) -> None:
    await add_documents(engine, ws, kb, [doc])
    chunks = texts(seed, 30 if kb == "kb-b" else 10)
    assert await index.write_document(ws, kb, doc, chunks, [b"\0" * 8] * len(chunks), 2)


def same(got: list[tuple[int, float]], want: list[tuple[int, float]], k: int) -> None:
    """Scores equal to 1e-9 relative, rank by rank; ids equal but for the order of tied
    scores (``rank_sql``'s ``sum`` adds a chunk's terms in the plan's order, so two chunks
    that tie can differ in the last bit: 11 of the bench's 156 questions) and, at the cut
    ``k``, which members of a tie crossing it are kept."""
    assert len(got) == len(want)
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert math.isclose(a, b, rel_tol=1e-9), (a, b)
    cut = round(want[-1][1], 9) if len(want) == k else None

    def ranked(hits: list[tuple[int, float]]) -> list[tuple[float, int]]:
        return sorted((round(s, 9), c) for c, s in hits if round(s, 9) != cut)

    assert ranked(got) == ranked(want)


async def check(
    exact: PgIndex, fast: PgIndex, cache: LexicalCache, docs: list[str] | None = None
) -> None:
    """Every query, the top 5 and every match: the postings answer (counted) as the SQL."""
    served = cache.served
    for query in QUERIES:
        for k in (5, 100):
            want = await exact.lexical("ws-a", "kb-a", query, k, docs)
            same(await fast.lexical("ws-a", "kb-a", query, k, docs), want, k)
    assert cache.served == served + 2 * len(QUERIES)


async def test_the_postings_rank_as_rank_sql(engine: AsyncEngine) -> None:
    cache = LexicalCache(SETTINGS)
    exact, fast = PgIndex(engine), PgIndex(engine, lexical=cache)
    for d in range(6):
        await write(engine, exact, "ws-a", "kb-a", f"d{d}", d)
    await write(engine, exact, "ws-b", "kb-b", "b0", 99)
    async with engine.connect() as conn:
        by_doc = {
            int(c): str(d)
            for c, d in await conn.execute(text("SELECT id, document_id FROM knowledge_chunks"))
        }
    # cold: rank_sql's answer while the postings build
    first = await exact.lexical("ws-a", "kb-a", QUERIES[0], 10)
    assert await fast.lexical("ws-a", "kb-a", QUERIES[0], 10) == first
    assert cache.served == 0
    await cache.wait()
    assert (cache.builds, cache.items) == (1, 60)
    everything = await exact.lexical("ws-a", "kb-a", QUERIES[0], 100)
    assert len(everything) > 40 and {by_doc[c] for c, _ in everything} == {
        f"d{d}" for d in range(6)
    }  # a query that ranks most of the knowledge base, never kb-b's chunks
    await check(exact, fast, cache)
    # a repeated word is one lexeme, weighed once: "refund refund" scores as "refund"
    once = await fast.lexical("ws-a", "kb-a", "refund", 100)
    assert once and await fast.lexical("ws-a", "kb-a", "refund refunds refund", 100) == once
    assert await fast.lexical("ws-a", "kb-a", "the of and", 10) == []  # stop words only
    # a documents filter: only theirs, with the whole knowledge base's statistics
    await check(exact, fast, cache, ["d1", "d4"])
    only = await fast.lexical("ws-a", "kb-a", QUERIES[0], 100, ["d1", "d4"])
    assert only == [h for h in everything if by_doc[h[0]] in ("d1", "d4")]
    assert await fast.lexical("ws-a", "kb-a", QUERIES[0], 10, ["b0"]) == []  # ws-b's
    # another workspace: nothing of kb-a, from the SQL or from (its own, empty) postings
    assert await exact.lexical("ws-b", "kb-a", QUERIES[0], 10) == []
    assert await fast.lexical("ws-b", "kb-a", QUERIES[0], 10) == []
    await cache.wait()
    assert await fast.lexical("ws-b", "kb-a", QUERIES[0], 10) == []
    some = [c for c, _ in everything[:3]]
    assert sorted(await fast.chunks("ws-a", some)) == sorted(some)
    assert await fast.chunks("ws-b", some) == {}  # the chunk rows: by id, of the workspace
    # a delete (10 of 60 chunks: masked, not rebuilt), seen by the revision
    assert await exact.delete_document("ws-a", "d2")
    served = cache.served
    assert await fast.lexical("ws-a", "kb-a", QUERIES[2], 10) == await exact.lexical(
        "ws-a", "kb-a", QUERIES[2], 10
    )
    assert cache.served == served  # stale: rank_sql answered, the refresh started
    await cache.wait()
    assert (cache.builds, cache.refreshes) == (2, 1)  # the ws-b build, then the refresh
    await check(exact, fast, cache)
    assert all(by_doc[c] != "d2" for c, _ in await fast.lexical("ws-a", "kb-a", "refund", 100))
    # a new document: a new segment
    await write(engine, exact, "ws-a", "kb-a", "d6", 6)
    await fast.lexical("ws-a", "kb-a", QUERIES[0], 10)
    await cache.wait()
    assert (cache.builds, cache.refreshes) == (2, 2)
    await check(exact, fast, cache)
    await check(exact, fast, cache, ["d6", "d0"])
    await exact.aclose()
    await fast.aclose()


async def test_terms_are_the_tsvectors_lexemes_and_counts(engine: AsyncEngine) -> None:
    """The ``TermSource`` rows: a lexeme's count is its positions (rank_sql's tf), the length
    the stored one, a lexeme with a colon still parses, and reads by id batch."""
    index = PgIndex(engine, lexical=LexicalCache(SETTINGS))
    await add_documents(engine, "ws-a", "kb-a", ["t"])
    chunks = [Chunk("Refunds", "refund the refunds, see example.com:8080", 9), Chunk("", "a", 1)]
    assert await index.write_document("ws-a", "kb-a", "t", chunks, [b"\0" * 8] * 2, 2)
    source = index._terms
    rows = await source.terms("ws-a", "kb-a", None)
    first, second = sorted(rows)
    assert first[1:] == ("t", 5, "example.com:8080:1 refund:3 see:1")
    assert second[1:] == ("t", 0, "")  # a stop word alone: no lexeme, length 0
    assert await source.terms("ws-a", "kb-a", [first[0]]) == [first]
    assert await source.terms("ws-b", "kb-a", None) == []
    assert sorted(await source.ids("ws-a", "kb-a")) == [(first[0], "t"), (second[0], "t")]
    assert await source.lexemes("refund | refunds | the | window") == ["refund", "window"]
    await index.aclose()
