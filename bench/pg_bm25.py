"""PostgreSQL full text: BM25 (``PgIndex.lexical``, ``knowledge.pg_bm25``) against the
``ts_rank_cd`` ranking it replaced (the baseline, run in the same process on the same rows).

The corpus, questions, chunking and knowledge-base setup are ``bench/retrieval.py``'s (its
module docstring): the 79 ``pydoc_data.topics`` topics chunked to the embedding model's
window (the packaged all-MiniLM-L6-v2 counts the tokens; no vectors are needed here, so a
zero vector stands in), two questions a topic; recall@5 and MRR@10 of both rankings. Then filler
chunks (120 words drawn, seeded, from the corpus's vocabulary) up to each ``--sizes`` in one
knowledge base, and each question's full-text query timed with both rankings, alternated
query by query (which goes first alternates too): p50/p95 ms of the index's read alone.

Run from the repository root, PostgreSQL at ``--pg``::

    .venv/bin/python bench/pg_bm25.py --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).parent))
from retrieval import (
    MODEL,
    WORD,
    WS,
    add_docs,
    add_kb,
    corpus,
    pct,
    questions,
)

from modelgrid.engines.embedding import EmbeddingEngine, build_embedding_engines
from modelgrid.knowledge.chunking import Chunk, ChunkPlan, chunk_sections
from modelgrid.knowledge.pg_index import PgIndex, ts_query
from modelgrid.storage import db as storage_db
from modelgrid.storage import migrate

DEPTH = 50
DIMS = 2
ZERO = b"\0" * 4 * DIMS
# The ranking PgIndex.lexical used before BM25 (commit 6dd2ae0), verbatim: the baseline.
TS_RANK_CD = (
    "SELECT t.chunk_id, ts_rank_cd(t.tsv, q) AS score "
    "FROM knowledge_pg_text t JOIN knowledge_chunks c ON c.id = t.chunk_id, "
    "to_tsquery('english', :q) q "
    "WHERE t.tsv @@ q AND t.knowledge_base_id = :kb AND c.workspace_id = :ws "
    "ORDER BY score DESC, t.chunk_id LIMIT :k"
)


async def fresh_database(server: str) -> str:
    """A new, empty database ``mg_bench_pg_bm25`` on ``server`` (its own: ``retrieval.py``
    may run beside it)."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(f"postgresql://{server}/postgres")
    try:
        await conn.execute("DROP DATABASE IF EXISTS mg_bench_pg_bm25 WITH (FORCE)")
        await conn.execute("CREATE DATABASE mg_bench_pg_bm25")
    finally:
        await conn.close()
    return f"postgresql+asyncpg://{server}/mg_bench_pg_bm25"


async def ts_rank_cd(engine: AsyncEngine, kb: str, query: str, k: int) -> list[int]:
    terms = ts_query(query)
    if terms is None:
        return []
    async with engine.connect() as conn:
        rows = await conn.execute(text(TS_RANK_CD), {"q": terms, "kb": kb, "ws": WS, "k": k})
        return [int(r[0]) for r in rows]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000", help="chunk counts for the latency runs")
    ap.add_argument("--pg", default="postgres@127.0.0.1:5432", help="user@host:port")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    [engine] = build_embedding_engines([MODEL], batch_size=64)
    assert isinstance(engine, EmbeddingEngine)
    await engine.start()
    plan = ChunkPlan().fitted(engine.max_input_tokens)
    overhead = (await engine.count_tokens([""]))[0]

    async def count(texts: list[str]) -> list[int]:
        return [n - overhead for n in await engine.count_tokens(texts)]

    docs = corpus()
    qs = questions(docs)
    now = datetime.datetime.now(datetime.UTC)
    print(f"# pg_bm25 bench {now:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"load average: {os.getloadavg()}")
    url = await fresh_database(args.pg)
    await asyncio.to_thread(migrate.upgrade, url)
    db = storage_db.create_engine(url)
    index = PgIndex(db)
    per_doc = [await chunk_sections([(h, b)], count, plan, overhead) for _, h, b in docs]
    await engine.aclose()
    await add_kb(db, "kb-corpus")
    await add_docs(db, "kb-corpus", [t for t, _, _ in docs])
    for (topic, _, _), cs in zip(docs, per_doc, strict=True):
        await index.write_document(WS, "kb-corpus", topic, cs, [ZERO] * len(cs), DIMS)
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT id, document_id FROM knowledge_chunks"))
        topic_of = {int(c): str(d) for c, d in rows}

    async def bm25(kb: str, q: str, k: int) -> list[int]:
        return [c for c, _ in await index.lexical(WS, kb, q, k)]

    rankers = {"BM25": bm25, "ts_rank_cd": lambda kb, q, k: ts_rank_cd(db, kb, q, k)}
    print(f"\n{len(topic_of)} chunks, {len(qs)} questions")
    print("| ranking | kind | recall@5 | MRR@10 |\n|---|---|---|---|")
    for name, rank in rankers.items():
        for kind in ("title", "keywords", "all"):
            chosen = [q for q in qs if kind in ("all", q[0])]
            hits, rr = 0, 0.0
            for _, q, topic in chosen:
                ids = (await rank("kb-corpus", q, DEPTH))[:10]
                ranks = [r for r, c in enumerate(ids, 1) if topic_of[c] == topic]
                hits += bool(ranks and ranks[0] <= 5)
                rr += 1 / ranks[0] if ranks else 0.0
            print(f"| {name} | {kind} | {hits / len(chosen):.3f} | {rr / len(chosen):.3f} |")

    rng = random.Random(13)
    flat = [c for cs in per_doc for c in cs]
    vocab = sorted({w for c in flat for w in WORD.findall(c.text.lower())})
    kb = "kb-scale"
    await add_kb(db, kb)
    await add_docs(db, kb, ["scale-corpus"])
    await index.write_document(WS, kb, "scale-corpus", flat, [ZERO] * len(flat), DIMS)
    have = len(flat)
    for size in sizes:
        t0, written = time.perf_counter(), 0
        while have < size:
            step = min(2000, size - have)
            doc = f"filler-{have}"
            await add_docs(db, kb, [doc])
            chunks = [Chunk("", " ".join(rng.choices(vocab, k=120)), 150) for _ in range(step)]
            await index.write_document(WS, kb, doc, chunks, [ZERO] * step, DIMS)
            have, written = have + step, written + step
        fill_s = time.perf_counter() - t0
        async with db.begin() as conn:
            await conn.execute(text("ANALYZE"))
        lat: dict[str, list[float]] = {n: [] for n in rankers}
        names = list(rankers)
        for name in names:
            await rankers[name](kb, qs[0][1], DEPTH)  # warm
        for i, (_, q, _) in enumerate(qs):
            for name in names[i % 2 :] + names[: i % 2]:
                t0 = time.perf_counter()
                await rankers[name](kb, q, DEPTH)
                lat[name].append((time.perf_counter() - t0) * 1000)
        print(
            f"\n{size} chunks in one knowledge base (filler written at "
            f"{written / fill_s if written else 0:.0f} chunks/s; load "
            f"{os.getloadavg()}):"
        )
        for name, xs in lat.items():
            print(f"  {name:10s} p50 {pct(xs, 50):6.1f} ms  p95 {pct(xs, 95):6.1f} ms  ({len(xs)})")
        b, t = lat["BM25"], lat["ts_rank_cd"]
        print(
            f"  BM25 / ts_rank_cd: p50 x{pct(b, 50) / pct(t, 50):.2f}, p95 x{pct(b, 95) / pct(t, 95):.2f}"
        )
    await report_sizes(db)
    await db.dispose()


async def report_sizes(db: AsyncEngine, tables: Sequence[str] = ()) -> None:
    names = tables or ("knowledge_pg_text", "knowledge_pg_terms", "knowledge_pg_stats")
    stmt = text(
        "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname IN :names"
    ).bindparams(bindparam("names", expanding=True))
    async with db.connect() as conn:
        for name, size in await conn.execute(stmt, {"names": list(names)}):
            print(f"{name}: {int(size) / 1e6:.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
