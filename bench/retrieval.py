"""Knowledge-base retrieval: quality (recall@5, MRR) of dense, BM25 and hybrid retrieval, and
speed (indexing chunks/s, query latency p50/p95 at 10k and 100k chunks) on SQLite or
PostgreSQL.

The product's own pieces, without HTTP: ``knowledge.chunking.chunk_sections`` (800/400 tokens
fitted to the model: 256/128 for all-MiniLM-L6-v2), the packaged all-MiniLM-L6-v2 through
``engines.embedding`` (the engine the gateway serves; called directly, not metered), the
``SqliteIndex`` (sqlite-vec + FTS5) in a throwaway migrated SQLite file (``--store postgres``:
the ``PgIndex``, full-text search (``pg_bm25.rank_sql``) and an exact vector scan, in a
throwaway migrated database on the PostgreSQL server of ``--pg``), and
``knowledge.fusion.reciprocal_rank_fusion`` (k = 60) over the two retrievers' top 50, as
``serving.knowledge.Retrieval`` does.

**Corpus.** The 79 topics of Python's own ``pydoc_data.topics`` (the language reference's
help pages, shipped with CPython, so every machine has the same text): one document per
topic, its first line the heading, the rest its text.

**Questions (the labelled set, derived by this script, deterministic).** Two per topic; a
question's relevant chunks are the chunks of its topic:

- *title*: the topic's heading line, lower-cased, punctuation removed (``the assert
  statement``): what a user who knows the name types.
- *keywords*: the topic's longest sentence of 10..60 words among its first 12 sentences (code
  lines and grammar rules skipped); its words lower-cased, English stop words dropped, and
  then only every second remaining word kept, at most 8 (a user who half-remembers a
  passage). Topics whose body yields no such sentence get no keyword question.

A question hits at rank r when the r-th retrieved chunk belongs to its topic. recall@5 =
share of questions hit within the top 5; MRR = mean of 1/r over the top 10 (0 if none).

**Speed.** Indexing: chunks/s of the corpus end to end (token counting, embedding on this
CPU, writing) and of the index writes alone. Latency: the corpus's chunks plus filler chunks
up to N in ONE knowledge base (the partition a query scans): filler text is 120 words drawn
(seeded) from the corpus's vocabulary, filler vectors are corpus vectors plus Gaussian noise
(sigma = 0.05 per dimension), renormalised. Each question's query is run once per mode; the
time is the index's (dense KNN, FTS5 BM25, the fusion and the chunk rows read), not the
query's embedding, which is reported on its own (one text on this CPU). ``hybrid`` runs the
two reads at once (the index's two read connections, as ``Retrieval`` does);
``hybrid-sequential``, one after the other, is the baseline measured in the same run.
``dense-mem`` and ``hybrid-mem`` run on a second index over the same store with the
process's own indexes: ``knowledge.ann``'s IVF index (its cold first search, build time, RSS
growth and recall@50 against the exact scan per nprobe are printed first) and
``knowledge.lexical``'s BM25 postings (``lexical-mem``; build time and RSS growth printed);
the exact ``dense``, ``lexical`` and ``hybrid`` are their baseline. On PostgreSQL,
``lexical`` is ``pg_bm25.rank_sql`` (the GIN index's matches, each scored in SQL). On SQLite,
``lexical`` is FTS5's
MATCH scored from the knowledge base's own statistics (``knowledge.fts_stats``, the path of
small knowledge bases), ``lexical-fts5`` FTS5's own ``bm25()`` over the shared table (the
query before per-knowledge-base statistics: the baseline of ``lexical-mem`` and ``lexical``)
and ``lexical-join`` the BM25 query before #13 (the words alone, each match joined to
``knowledge_chunks``). All modes are interleaved query by query in a rotating order
(``--latency-questions N``: the first N questions only, for the slow exact scan on
PostgreSQL at 100k).

**pgvector** (``--store postgres`` on a server with the extension: scripts/pgvector.sh): the
baseline ``index`` is then the ``bytea`` path (``PgIndex(pgvector=False)``: ``dense`` reads
every vector and ranks them with numpy), but every write also fills the ``vec`` column and its
HNSW index (the write rates include that); ``dense-pgx`` / ``hybrid-pgx`` run pgvector's exact
scan in the server, ``dense-hnsw`` / ``hybrid-hnsw`` its HNSW index (iterative scan, the
knowledge base filtered), both with BM25 from the postings as ``hybrid-mem`` (the gateway's
wiring); the HNSW index's size, its first search and recall@50 against the exact ranking per
``ef_search`` are printed before the latencies (recall@50 of the IVF index is then against
pgvector's exact scan too: the same ranking, to 1e-6). ``--bytea-scan-max N`` drops ``dense``,
``hybrid`` and ``hybrid-sequential`` above N chunks (seconds a query at 100k).

Quality is also given for ``lexical-mem`` (equal to ``lexical``: the same scores) and on
SQLite for ``lexical-fts5`` (the corpus is the only knowledge base then, so FTS5's pooled
statistics are its own: the three agree).

Run from the repository root (embeddings and knowledge extras installed)::

    .venv/bin/python bench/retrieval.py                      # 10k chunks
    .venv/bin/python bench/retrieval.py --sizes 10000,100000
    .venv/bin/python bench/retrieval.py --store postgres     # PgIndex, 10k chunks
    .venv/bin/python bench/retrieval.py --store postgres --sizes 10000,100000 \
        --latency-questions 40 --bytea-scan-max 10000        # pgvector vs the process's IVF
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import os
import platform
import random
import re
import sqlite3
import struct
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelgrid.engines.embedding import EmbeddingEngine, build_embedding_engines
from modelgrid.knowledge.ann import AnnCache, AnnSettings
from modelgrid.knowledge.chunking import Chunk, ChunkPlan, chunk_sections
from modelgrid.knowledge.fusion import reciprocal_rank_fusion
from modelgrid.knowledge.index import KnowledgeIndex
from modelgrid.knowledge.lexical import LexicalCache, LexicalSettings
from modelgrid.knowledge.pg_index import PgIndex
from modelgrid.knowledge.pg_vector import PgVectorSettings, index_name
from modelgrid.knowledge.sqlite_index import SqliteIndex, fts_query, kb_token
from modelgrid.storage import db as storage_db
from modelgrid.storage import migrate
from modelgrid.storage.models import KnowledgeBase, Workspace

MODEL = "all-minilm-l6-v2"
WS = "ws-bench"
DEPTH = 50  # each retriever's candidates before fusion (serving.knowledge.CANDIDATES_MIN)
_STOP = "a an and are as at be by can for from has have if in into is it its may must no not of "
_STOP += "on or such that the their then there these this to was were when which will with"
STOP = frozenset(_STOP.split(" "))
WORD = re.compile(r"[a-z0-9_]+")
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def corpus() -> list[tuple[str, str, str]]:
    """(topic, heading, text) for every pydoc topic."""
    from pydoc_data.topics import topics

    out = []
    for name in sorted(topics):
        lines = topics[name].strip().splitlines()
        heading = lines[0].strip()
        body = "\n".join(lines[1:]).strip().lstrip("*=").strip()
        out.append((name, heading, body))
    return out


def questions(docs: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """(kind, query, topic): see the module docstring."""
    qs = []
    for topic, heading, body in docs:
        qs.append(("title", " ".join(WORD.findall(heading.lower())), topic))
        prose = [ln for ln in body.splitlines() if ln and not ln.startswith("   ")]
        sentences = SENTENCE.split(" ".join(" ".join(prose).split()))[:12]
        good = [s for s in sentences if 10 <= len(s.split()) <= 60 and "::=" not in s]
        if not good:
            continue
        longest = max(good, key=lambda s: len(s.split()))
        words = [w for w in WORD.findall(longest.lower()) if w not in STOP]
        qs.append(("keywords", " ".join(words[::2][:8]), topic))
    return qs


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def fresh_postgres(server: str) -> str:
    """A new, empty database ``mg_bench_retrieval`` on ``server`` (``user@host:port``)."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(f"postgresql://{server}/postgres")
    try:
        await conn.execute("DROP DATABASE IF EXISTS mg_bench_retrieval")
        await conn.execute("CREATE DATABASE mg_bench_retrieval")
    finally:
        await conn.close()
    return f"postgresql+asyncpg://{server}/mg_bench_retrieval"


async def add_kb(engine: AsyncEngine, kb: str) -> None:
    """The workspace (once) and the knowledge base the documents belong to (PostgreSQL
    checks the foreign keys)."""
    now = datetime.datetime.now(datetime.UTC)
    async with storage_db.sessionmaker(engine)() as session, session.begin():
        if await session.get(Workspace, WS) is None:
            session.add(Workspace(id=WS, name=WS))
            await session.flush()  # before the knowledge base that refers to it
        session.add(
            KnowledgeBase(
                id=kb,
                workspace_id=WS,
                name=kb,
                region="local",
                embedding_model=MODEL,
                chunk_tokens=800,
                chunk_overlap=400,
                created_at=now,
            )
        )


async def add_docs(engine: AsyncEngine, kb: str, doc_ids: Sequence[str]) -> None:
    now = datetime.datetime.now(datetime.UTC)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO knowledge_documents (id, workspace_id, knowledge_base_id, "
                "api_key_id, filename, format, bytes, status, chunks_total, chunks_done, "
                "tokens, created_at) VALUES (:d, :ws, :kb, 'k', 'x', 'text', 0, 'indexing', "
                "0, 0, 0, :now)"
            ),
            [{"d": d, "ws": WS, "kb": kb, "now": now} for d in doc_ids],
        )


async def embed_all(engine: EmbeddingEngine, texts: list[str], batch: int = 64) -> list[bytes]:
    out: list[bytes] = []
    for i in range(0, len(texts), batch):
        out.extend((await engine.embed(texts[i : i + batch])).vectors)
    return out


def lexical_join(db: Path, kb: str, query: str) -> list[tuple[int, float]]:
    """The baseline of ``lexical``: FTS5's MATCH on the words alone, each matching row joined
    to ``knowledge_chunks`` for its knowledge base and workspace (the query before #13)."""
    match = fts_query(query)
    if match is None:
        return []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT f.rowid, bm25(knowledge_fts, 1.0, 0.0) AS score FROM knowledge_fts f "
            "JOIN knowledge_chunks c ON c.id = f.rowid WHERE knowledge_fts MATCH ? "
            "AND c.knowledge_base_id = ? AND c.workspace_id = ? ORDER BY score LIMIT ?",
            (f"text : ({match})", kb, WS, DEPTH),
        ).fetchall()
    return [(int(r[0]), -float(r[1])) for r in rows]


def lexical_fts5(db: Path, kb: str, query: str) -> list[tuple[int, float]]:
    """The baseline of ``lexical-mem``: FTS5's own ``bm25()`` (statistics of the whole table)
    with the knowledge base in the MATCH, the top ``DEPTH`` checked against the workspace (the
    query before per-knowledge-base statistics)."""
    match = fts_query(query)
    if match is None:
        return []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT rowid, bm25(knowledge_fts, 1.0, 0.0) AS score FROM knowledge_fts "
            "WHERE knowledge_fts MATCH ? ORDER BY score LIMIT ?",
            (f'kb : "{kb_token(kb)}" AND text : ({match})', DEPTH),
        ).fetchall()
        ids = [r[0] for r in rows]
        marks = ",".join("?" * len(ids))
        mine = {
            r[0]
            for r in conn.execute(
                f"SELECT id FROM knowledge_chunks WHERE id IN ({marks}) AND workspace_id = ?",
                (*ids, WS),
            )
        }
    return [(int(r[0]), -float(r[1])) for r in rows if r[0] in mine]


BASELINES = {"lexical-join": lexical_join, "lexical-fts5": lexical_fts5}


async def search(
    index: KnowledgeIndex, kb: str, mode: str, query: str, vector: bytes, dims: int
) -> list[int]:
    if mode in BASELINES:  # the baselines (SQLite only), read as Retrieval does
        assert isinstance(index, SqliteIndex)
        hits = await asyncio.to_thread(BASELINES[mode], index.path, kb, query)
        ids = [c for c, _ in hits[:10]]
        await index.chunks(WS, ids)
        return ids

    async def by_vector() -> list[tuple[int, float]]:
        return await index.dense(WS, kb, vector, dims, DEPTH) if mode != "lexical" else []

    async def by_words() -> list[tuple[int, float]]:
        return await index.lexical(WS, kb, query, DEPTH) if mode != "dense" else []

    if mode == "hybrid-sequential":  # the baseline: one read after the other
        dense, lexical = await by_vector(), await by_words()
    else:  # both at once, on the index's two read connections, as serving.knowledge does
        dense, lexical = await asyncio.gather(by_vector(), by_words())
    mode = "hybrid" if mode == "hybrid-sequential" else mode
    if mode == "dense":
        ids = [c for c, _ in dense[:10]]
    elif mode == "lexical":
        ids = [c for c, _ in lexical[:10]]
    else:
        fused = reciprocal_rank_fusion([[c for c, _ in dense], [c for c, _ in lexical]], limit=10)
        ids = [h.chunk_id for h in fused]
    await index.chunks(WS, ids)  # the rows a caller gets, as Retrieval reads them
    return ids


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(ln.split()[1]) / 1024 for ln in status.splitlines() if ln.startswith("VmRSS:"))


async def ann_graph(
    args: argparse.Namespace,
    engine_db: AsyncEngine,
    db: Path,
    exact: KnowledgeIndex,
    kb: str,
    qs: Sequence[tuple[str, str, str]],
    qvec: Sequence[bytes],
    dims: int,
) -> tuple[AnnCache, LexicalCache, KnowledgeIndex]:
    """A second index on the same store with ``knowledge.ann``'s IVF index (built for every
    knowledge base of at least 1 chunk): the cold first search (the exact scan, starting the
    build), the build's time and the process's RSS growth, and the graph's recall@50 against
    the exact scan per ``nprobe``; also ``knowledge.lexical``'s postings (their build time
    and RSS growth)."""
    ann = AnnCache(AnnSettings(min_vectors=1, nprobe=args.nprobe))
    lex = LexicalCache(LexicalSettings(min_chunks=1))
    index: KnowledgeIndex = (
        PgIndex(engine_db, ann, lex, pgvector=False)
        if args.store == "postgres"
        else SqliteIndex(db, ann, lex)
    )
    rss0 = rss_mb()
    t0 = time.perf_counter()
    await search(index, kb, "dense", qs[0][1], qvec[0], dims)
    cold_ms = (time.perf_counter() - t0) * 1000
    during: list[float] = []
    while ann.building:  # searches while the graph builds: the exact scan
        t1 = time.perf_counter()
        await search(
            index, kb, "dense", qs[len(during) % len(qs)][1], qvec[len(during) % len(qs)], dims
        )
        during.append((time.perf_counter() - t1) * 1000)
    await ann.wait()
    build_s = time.perf_counter() - t0
    print(
        f"  ANN (IVF-Flat, sqrt(n) lists): "
        f"first search (cold, exact scan) {cold_ms:.1f} ms; built in {build_s:.1f} s "
        f"({ann.vectors} vectors, RSS +{rss_mb() - rss0:.0f} MB); "
        f"{len(during)} searches during the build, p50 {pct(during or [0.0], 50):.1f} ms"
    )
    qvec = qvec[: args.latency_questions]
    truth = [[c for c, _ in await exact.dense(WS, kb, v, dims, DEPTH)] for v in qvec]
    for probes in sorted({8, 16, 32, 64, args.nprobe}):
        ann.settings = dataclasses.replace(ann.settings, nprobe=probes)
        got, ms = [], []
        for v in qvec:
            t1 = time.perf_counter()
            got.append([c for c, _ in await index.dense(WS, kb, v, dims, DEPTH)])
            ms.append((time.perf_counter() - t1) * 1000)
        recall = sum(len(set(g) & set(t)) / len(t) for g, t in zip(got, truth, strict=True))
        print(
            f"  nprobe {probes:3d}: recall@{DEPTH} vs exact {recall / len(truth):.4f}, "
            f"dense p50 {pct(ms, 50):.1f} ms p95 {pct(ms, 95):.1f} ms"
        )
    ann.settings = dataclasses.replace(ann.settings, nprobe=args.nprobe)
    rss0 = rss_mb()
    t0 = time.perf_counter()
    await index.lexical(WS, kb, qs[0][1], DEPTH)  # cold: the store's BM25, starting the build
    cold_ms = (time.perf_counter() - t0) * 1000
    await lex.wait()
    print(
        f"  BM25 postings: first search (cold, {'FTS5' if args.store == 'sqlite' else 'SQL'}) "
        f"{cold_ms:.1f} ms; built in {time.perf_counter() - t0:.1f} s "
        f"({lex.items} chunks, RSS +{rss_mb() - rss0:.0f} MB)"
    )
    return ann, lex, index


VIA = ("mem", "pgx", "hnsw")  # a latency mode's suffix: the index it runs on


async def hnsw_recall(
    args: argparse.Namespace,
    engine_db: AsyncEngine,
    exact: KnowledgeIndex,
    lex: LexicalCache,
    kb: str,
    qvec: Sequence[bytes],
    dims: int,
) -> dict[str, KnowledgeIndex]:
    """pgvector's two paths over the same store, BM25 from ``lex``'s postings (as the gateway
    wires them): ``pgx`` its exact scan in the server, ``hnsw`` its HNSW index (every
    knowledge base); the index's size, the first (cold) HNSW search, and recall@50 of HNSW
    against the exact scan per ``ef_search``."""
    pgx = PgIndex(engine_db, lexical=lex, vector_settings=PgVectorSettings(hnsw_min_chunks=2**62))
    settings = PgVectorSettings(hnsw_min_chunks=1, ef_search=args.ef_search)
    hnsw = PgIndex(engine_db, lexical=lex, vector_settings=settings)
    t0 = time.perf_counter()
    await hnsw.dense(WS, kb, qvec[0], dims, DEPTH)
    cold_ms = (time.perf_counter() - t0) * 1000
    async with engine_db.connect() as conn:
        size = await conn.scalar(
            text("SELECT pg_relation_size(CAST(:n AS regclass))"), {"n": index_name(dims)}
        )
    print(
        f"  pgvector HNSW (m {settings.m}, ef_construction {settings.ef_construction}): "
        f"{int(size or 0) / 1e6:.0f} MB, first search {cold_ms:.1f} ms"
    )
    qvec = qvec[: args.latency_questions]
    truth = [[c for c, _ in await exact.dense(WS, kb, v, dims, DEPTH)] for v in qvec]
    for ef in sorted({40, 100, 200, 400, args.ef_search}):
        hnsw.vector_settings = dataclasses.replace(settings, ef_search=ef)
        got, ms = [], []
        for v in qvec:
            t1 = time.perf_counter()
            got.append([c for c, _ in await hnsw.dense(WS, kb, v, dims, DEPTH)])
            ms.append((time.perf_counter() - t1) * 1000)
        recall = sum(len(set(g) & set(t)) / len(t) for g, t in zip(got, truth, strict=True))
        print(
            f"  ef_search {ef:3d}: recall@{DEPTH} vs exact {recall / len(truth):.4f}, "
            f"dense p50 {pct(ms, 50):.1f} ms p95 {pct(ms, 95):.1f} ms"
        )
    hnsw.vector_settings = settings
    return {"pgx": pgx, "hnsw": hnsw}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000", help="chunk counts for the latency runs")
    ap.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--pg", default="postgres@127.0.0.1:5432", help="user@host:port")
    ap.add_argument(
        "--latency-questions", type=int, default=None, help="questions timed per size (all)"
    )
    ap.add_argument("--nprobe", type=int, default=AnnSettings().nprobe, help="IVF lists scanned")
    ap.add_argument(
        "--ef-search", type=int, default=PgVectorSettings().ef_search, help="pgvector HNSW"
    )
    ap.add_argument(
        "--bytea-scan-max",
        type=int,
        default=None,
        help="with pgvector: above this size, skip the modes reading every vector (dense, hybrid)",
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    [engine] = build_embedding_engines([MODEL], batch_size=64)
    assert isinstance(engine, EmbeddingEngine)
    await engine.start()
    dims = engine.dimensions
    plan = ChunkPlan().fitted(engine.max_input_tokens)
    overhead = (await engine.count_tokens([""]))[0]

    async def count(texts: list[str]) -> list[int]:
        return [n - overhead for n in await engine.count_tokens(texts)]

    docs = corpus()
    qs = questions(docs)
    print(f"# retrieval bench {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(
        f"corpus: {len(docs)} pydoc topics; questions: {len(qs)} "
        f"({sum(k == 'title' for k, _, _ in qs)} title, {sum(k == 'keywords' for k, _, _ in qs)} keywords)"
    )
    print(
        f"plan: {plan.size}/{plan.overlap} tokens (800/400 fitted to the model's {engine.max_input_tokens})"
    )

    tmp = Path(tempfile.mkdtemp(prefix="mg-retrieval-"))
    db = tmp / "bench.db"
    if args.store == "postgres":
        url = await fresh_postgres(args.pg)
    else:
        url = f"sqlite+aiosqlite:///{db}"
    await asyncio.to_thread(migrate.upgrade, url)
    engine_db = storage_db.create_engine(url)
    # on PostgreSQL, ``index`` is the bytea path (numpy's exact scan: the baseline); with
    # pgvector in the server, its first use below adds the ``vec`` column, so every write
    # fills it and keeps the HNSW index (the write rates include that)
    index: KnowledgeIndex = (
        PgIndex(engine_db, pgvector=False) if args.store == "postgres" else SqliteIndex(db)
    )
    pgvector = False
    if args.store == "postgres":
        probe = PgIndex(engine_db)
        await probe.dense(WS, "none", b"\0" * 4 * dims, dims, 1)  # first use: the extension
        pgvector = probe.pgvector
    # the exact ranking recall@50 is measured against: pgvector's scan in the server where it
    # is there (the numpy scan's ranking, to 1e-6, without reading every vector)
    truth: KnowledgeIndex = (
        PgIndex(engine_db, vector_settings=PgVectorSettings(hnsw_min_chunks=2**62))
        if pgvector
        else index
    )
    print(f"store: {args.store}{' (pgvector)' if pgvector else ''}")

    # --- indexing the corpus: count, chunk, embed, write ---------------------------------
    t0 = time.perf_counter()
    per_doc: list[list[Chunk]] = []
    for _topic, heading, body in docs:
        per_doc.append(await chunk_sections([(heading, body)], count, plan, overhead))
    t_chunk = time.perf_counter() - t0
    flat = [c for cs in per_doc for c in cs]
    inputs = [f"{c.heading}\n{c.text}" if c.heading else c.text for c in flat]
    longest = max(await engine.count_tokens(inputs))
    assert longest <= engine.max_input_tokens, longest  # every chunk fits the model whole
    t0 = time.perf_counter()
    vectors = await embed_all(engine, inputs)
    t_embed = time.perf_counter() - t0
    await add_kb(engine_db, "kb-corpus")
    await add_docs(engine_db, "kb-corpus", [t for t, _, _ in docs])
    t0 = time.perf_counter()
    pos = 0
    topic_of: dict[int, str] = {}
    for (topic, _, _), cs in zip(docs, per_doc, strict=True):
        await index.write_document(WS, "kb-corpus", topic, cs, vectors[pos : pos + len(cs)], dims)
        pos += len(cs)
    t_write = time.perf_counter() - t0
    async with engine_db.connect() as conn:
        for cid, doc in await conn.execute(text("SELECT id, document_id FROM knowledge_chunks")):
            topic_of[cid] = doc
    n = len(flat)
    total = t_chunk + t_embed + t_write
    print(
        f"\nlongest chunk with its heading: {longest} tokens (the model reads {engine.max_input_tokens})"
    )
    print(
        f"indexing {n} chunks: {n / total:.1f} chunks/s end to end "
        f"(count+chunk {t_chunk:.1f} s, embed {t_embed:.1f} s, write {t_write:.2f} s); "
        f"writes alone {n / t_write:.0f} chunks/s"
    )

    # --- quality -------------------------------------------------------------------------
    qvec: list[bytes] = []
    embed_ms: list[float] = []
    for _, q, _ in qs:
        t0 = time.perf_counter()
        qvec.append((await engine.embed([q])).vectors[0])
        embed_ms.append((time.perf_counter() - t0) * 1000)
    print(
        f"query embedding (one text, this CPU): p50 {pct(embed_ms, 50):.1f} ms, p95 {pct(embed_ms, 95):.1f} ms"
    )
    print("\n| method | questions | recall@5 | MRR@10 |")
    print("|---|---|---|---|")
    results: dict[tuple[str, str], tuple[float, float]] = {}
    quality_modes = ["dense", "lexical", "hybrid"]
    quality_modes[2:2] = (
        ["lexical-fts5", "lexical-mem"] if args.store == "sqlite" else ["lexical-mem"]
    )
    mem_lex = LexicalCache(LexicalSettings(min_chunks=1))
    mem_index: KnowledgeIndex = (
        SqliteIndex(db, lexical=mem_lex)
        if args.store == "sqlite"
        else PgIndex(engine_db, lexical=mem_lex)
    )
    await mem_index.lexical(WS, "kb-corpus", qs[0][1], DEPTH)
    await mem_lex.wait()
    for kind in ("title", "keywords", "all"):
        chosen = [i for i, (k, _, _) in enumerate(qs) if kind in ("all", k)]
        for mode in quality_modes:
            hits5, rr = 0, 0.0
            for i in chosen:
                _, q, topic = qs[i]
                via = mem_index if mode.endswith("-mem") else index
                ids = await search(via, "kb-corpus", mode.removesuffix("-mem"), q, qvec[i], dims)
                ranks = [r for r, cid in enumerate(ids, start=1) if topic_of.get(cid) == topic]
                if ranks and ranks[0] <= 5:
                    hits5 += 1
                rr += 1 / ranks[0] if ranks else 0.0
            rec, mrr = hits5 / len(chosen), rr / len(chosen)
            results[(kind, mode)] = (rec, mrr)
            name = {
                "lexical": "BM25 (FTS5 MATCH, own statistics)"
                if args.store == "sqlite"
                else "BM25 (PG FTS)",
                "lexical-fts5": "BM25 (FTS5 bm25())",
                "lexical-mem": "BM25 (postings)",
                "dense": "dense (cosine)",
                "hybrid": "hybrid (RRF k=60)",
            }[mode]
            print(f"| {name}, {kind} | {len(chosen)} | {rec:.3f} | {mrr:.3f} |")
    rd, rl, rh = (results[("all", m)][0] for m in ("dense", "lexical", "hybrid"))
    print(f"hybrid recall@5 vs dense x{rh / rd:.2f}, vs BM25 x{rh / rl:.2f}")
    await mem_index.aclose()

    # --- latency at scale ----------------------------------------------------------------
    rng = random.Random(13)
    vocab = sorted({w for c in flat for w in WORD.findall(c.text.lower())})
    have = 0
    kb = "kb-scale"
    await add_kb(engine_db, kb)
    await add_docs(engine_db, kb, ["scale-corpus"])
    await index.write_document(WS, kb, "scale-corpus", flat, vectors, dims)
    have = n
    fmt = f"<{dims}f"
    base = [struct.unpack(fmt, v) for v in vectors]
    for size in sizes:
        t0 = time.perf_counter()
        written = 0
        while have < size:
            step = min(2000, size - have)
            doc = f"filler-{have}"
            await add_docs(engine_db, kb, [doc])
            chunks = [Chunk("", " ".join(rng.choices(vocab, k=120)), 150) for _ in range(step)]
            vecs = []
            for _ in range(step):
                v = [x + rng.gauss(0.0, 0.05) for x in rng.choice(base)]
                norm = sum(x * x for x in v) ** 0.5
                vecs.append(struct.pack(fmt, *(x / norm for x in v)))
            await index.write_document(WS, kb, doc, chunks, vecs, dims)
            have += step
            written += step
        t_fill = time.perf_counter() - t0
        print(
            f"\n{size} chunks in one knowledge base (filler written at "
            f"{written / t_fill if written else 0:.0f} chunks/s; "
            f"{datetime.datetime.now(datetime.UTC):%H:%M:%S} UTC):"
        )
        ann, lex, mem = await ann_graph(args, engine_db, db, truth, kb, qs, qvec, dims)
        on_pg: dict[str, KnowledgeIndex] = {}
        if pgvector:  # pgvector: its exact scan in the server and HNSW, BM25 from the postings
            on_pg = await hnsw_recall(args, engine_db, truth, lex, kb, qvec, dims)
        modes = [
            "dense",
            "lexical",
            "hybrid-sequential",
            "hybrid",
            "dense-mem",
            "hybrid-mem",
            "lexical-mem",
        ]
        pairs = [
            ("hybrid", "hybrid-sequential"),
            ("dense-mem", "dense"),
            ("hybrid-mem", "hybrid"),
            ("lexical-mem", "lexical"),
        ]
        if on_pg:
            modes += ["dense-pgx", "dense-hnsw", "hybrid-pgx", "hybrid-hnsw"]
            pairs += [
                ("dense-pgx", "dense"),
                ("dense-mem", "dense-pgx"),
                ("dense-hnsw", "dense-pgx"),
                ("dense-hnsw", "dense-mem"),
                ("hybrid-mem", "hybrid-pgx"),
                ("hybrid-hnsw", "hybrid-pgx"),
                ("hybrid-hnsw", "hybrid-mem"),
            ]
            if args.bytea_scan_max is not None and size > args.bytea_scan_max:
                modes = [m for m in modes if m not in ("dense", "hybrid", "hybrid-sequential")]
                pairs = [p for p in pairs if all(m in modes for m in p)]
        if args.store == "sqlite":
            modes += ["lexical-fts5", "lexical-join"]
            pairs += [
                ("lexical-mem", "lexical-fts5"),
                ("lexical", "lexical-fts5"),
                ("lexical-fts5", "lexical-join"),
            ]
        lat: dict[str, list[float]] = {m: [] for m in modes}
        suffix = {m: m.rsplit("-", 1)[-1] for m in modes if m.rsplit("-", 1)[-1] in VIA}
        on = {m: {"mem": mem, **on_pg}.get(suffix.get(m, ""), index) for m in modes}
        kind = {m: m.removesuffix(f"-{suffix[m]}") if m in suffix else m for m in modes}
        for mode in modes:
            await search(on[mode], kb, kind[mode], qs[0][1], qvec[0], dims)
        for i, (_, q, _) in enumerate(qs[: args.latency_questions]):  # modes interleaved, rotating
            for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:
                t0 = time.perf_counter()
                await search(on[mode], kb, kind[mode], q, qvec[i], dims)
                lat[mode].append((time.perf_counter() - t0) * 1000)
        for mode, xs in lat.items():
            print(f"  {mode:17s} p50 {pct(xs, 50):6.1f} ms  p95 {pct(xs, 95):6.1f} ms  ({len(xs)})")
        for a, b in pairs:
            print(
                f"  {a} vs {b}: p50 x{pct(lat[a], 50) / pct(lat[b], 50):.2f}, "
                f"p95 x{pct(lat[a], 95) / pct(lat[b], 95):.2f}"
            )
        assert ann.served >= 2 * len(lat["dense-mem"]), ann.served  # -mem: from the graph
        assert lex.served >= 2 * len(lat["lexical-mem"]), lex.served  # and from the postings
        print(
            f"  load average now: {os.getloadavg()} "
            f"({datetime.datetime.now(datetime.UTC):%H:%M:%S} UTC)"
        )
        await mem.aclose()
    if args.store == "sqlite":
        print(f"\nfile: {db.stat().st_size / 1e6:.0f} MB at {have} chunks")
    else:
        async with engine_db.connect() as conn:
            db_bytes = (
                await conn.execute(text("SELECT pg_database_size(current_database())"))
            ).scalar()
        print(f"\ndatabase: {int(db_bytes or 0) / 1e6:.0f} MB at {have} chunks")
    await index.aclose()
    await engine_db.dispose()
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
