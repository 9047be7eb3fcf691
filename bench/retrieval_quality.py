"""Knowledge-base retrieval quality (issue #13): recall@5 and MRR@10 of dense, BM25 and hybrid
retrieval, a study of fusion functions tuned on one half of the questions and reported on the
other, and (``--rerank``) pointwise re-ranking of the fused top N by the served chat model.

**Corpus and index** as ``bench/retrieval.py`` builds them (its ``corpus``, the product's
chunking fitted to all-MiniLM-L6-v2, the packaged model called directly, the ``SqliteIndex``):
the 79 topics of Python's ``pydoc_data.topics``, one document per topic.

**Questions**, three kinds; a question hits at rank r when the r-th chunk retrieved belongs to
its topic or to a topic with the same text ('if' and 'else' are one page twice):

- *title* and *keywords*: derived from the text by ``bench/retrieval.py``'s ``questions``
  (the heading line; every second non-stop word of a long early sentence). Their words are
  the text's own, which favours BM25 by construction.
- *paraphrase*: ``bench/data/pydoc_paraphrases.json``, one hand-written question per topic,
  what a user would ask without knowing the page's wording. Method: written from knowledge of
  the language, then checked by ``overlaps`` (run here; the bench stops if one fails): no
  question shares 3 consecutive words (``[a-z0-9_]+``, lower-cased) with its topic's text;
  offending questions were reworded, never dropped.

**Metrics.** recall@5: the share of questions hit within the top 5; MRR@10: the mean of 1/r
over the top 10 (0 if none).

**Fusion study.** Each retriever's top 100 is read once per question (dense: cosine
similarity by sqlite-vec; lexical: FTS5 BM25); every fusion then runs on those lists through
``knowledge.fusion`` (the product's code) cut to a candidate depth of 10, 20, 50 or 100:
RRF with k in {10, 20, 30, 60} (weights 1:1), weighted RRF (dense share 0.1..0.9), and the
convex combination with min-max or theoretical-min normalisation (alpha 0..1 by 0.05).
**Split**: the topics in sorted order alternate between *tune* (even positions) and *test*
(odd); a topic's questions of all kinds go with it. Each family's parameters are chosen on
*tune* (highest recall@5, then MRR, then the simplest: smaller depth) and reported on *test*
and on all questions; only the held-out figures judge the families.

**Re-ranking** (``--rerank N``): the served chat model (the packaged Qwen2.5-Coder-0.5B-
Instruct through ``engines.llamacpp``) scores each of the fused top N chunks by P(yes) for
"does this passage answer the question" (``serving.rerank``'s prompt, as Qwen3-Reranker
does); the chunks are re-ordered by it. Reported side by side with the fusion it re-ranks,
with its latency per query and the prompt tokens it reads.

Run from the repository root (embeddings extra installed)::

    .venv/bin/python bench/retrieval_quality.py
    .venv/bin/python bench/retrieval_quality.py --rerank 10 --cache /tmp/mg-vectors.bin
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from retrieval import MODEL, WS, add_docs, add_kb, corpus, embed_all, questions
from sqlalchemy import text

from modelgrid.engines.embedding import EmbeddingEngine, build_embedding_engines
from modelgrid.knowledge.chunking import Chunk, ChunkPlan, chunk_sections
from modelgrid.knowledge.fusion import DEFAULT, Fusion
from modelgrid.knowledge.sqlite_index import SqliteIndex
from modelgrid.storage import db as storage_db
from modelgrid.storage import migrate

PARAPHRASES = Path(__file__).parent / "data" / "pydoc_paraphrases.json"
READ = 100  # each retriever's list read once per question
DEPTHS = (10, 20, 50, 100)
KINDS = ("title", "keywords", "paraphrase")
WORD = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True, slots=True)
class Question:
    kind: str
    query: str
    topic: str


@dataclass(slots=True)
class Lists:
    """One question's two candidate lists (best first)."""

    dense: list[tuple[int, float]]  # (chunk id, cosine similarity)
    lexical: list[tuple[int, float]]  # (chunk id, BM25)


def overlaps(question: str, page: str, n: int = 3) -> list[str]:
    """The runs of ``n`` consecutive words ``question`` shares with ``page``."""
    words = WORD.findall(page.lower())
    grams = {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
    q = WORD.findall(question.lower())
    return [" ".join(q[i : i + n]) for i in range(len(q) - n + 1) if tuple(q[i : i + n]) in grams]


def paraphrases(pages: dict[str, str]) -> list[Question]:
    """The hand-written questions, each checked against its topic's text."""
    rows = json.loads(PARAPHRASES.read_text())["questions"]
    bad = {r["topic"]: overlaps(r["question"], pages[r["topic"]]) for r in rows}
    bad = {t: o for t, o in bad.items() if o}
    if bad:
        raise SystemExit(f"paraphrases copy the text's own words: {bad}")
    return [Question("paraphrase", r["question"], r["topic"]) for r in rows]


def split(topics: Sequence[str]) -> tuple[set[str], set[str]]:
    """(tune, test): the sorted topics at even and at odd positions."""
    ordered = sorted(topics)
    return set(ordered[0::2]), set(ordered[1::2])


def score(
    ranked: Callable[[int], list[int]],
    qs: Sequence[Question],
    chosen: Sequence[int],
    hit: Callable[[int, Question], bool],
) -> tuple[float, float]:
    """(recall@5, MRR@10) of ``ranked(i)`` (chunk ids, best first) over questions ``chosen``."""
    hits5, rr = 0, 0.0
    for i in chosen:
        ids = ranked(i)[:10]
        first = next((r for r, cid in enumerate(ids, start=1) if hit(cid, qs[i])), None)
        if first is not None:
            hits5 += first <= 5
            rr += 1 / first
    return hits5 / len(chosen), rr / len(chosen)


def candidates() -> dict[str, list[Fusion]]:
    """Every fusion the study tries, by family."""
    alphas = [i / 20 for i in range(21)]
    shares = [i / 10 for i in range(1, 10)]
    out: dict[str, list[Fusion]] = {
        "RRF (1:1)": [Fusion("rrf", 0.5, k, depth=d) for k in (10, 20, 30, 60) for d in DEPTHS],
        "weighted RRF": [
            Fusion("rrf", w, k, depth=d) for k in (10, 20, 30, 60) for w in shares for d in DEPTHS
        ],
        "convex, min-max": [
            Fusion("convex", a, normalization="min-max", depth=d) for a in alphas for d in DEPTHS
        ],
        "convex, theoretical-min": [
            Fusion("convex", a, normalization="theoretical-min", depth=d)
            for a in alphas
            for d in DEPTHS
        ],
    }
    return out


def describe(f: Fusion) -> str:
    if f.method == "rrf":
        return f"RRF k={f.rrf_k}, dense share {f.dense_weight:.2f}, depth {f.depth}"
    return f"convex {f.normalization}, alpha {f.dense_weight:.2f}, depth {f.depth}"


def fused(f: Fusion, lists: Lists) -> list[int]:
    hits = f.fuse(lists.dense[: f.depth], lists.lexical[: f.depth], limit=10)
    return [h.chunk_id for h in hits]


async def build(cache: Path | None) -> tuple[EmbeddingEngine, SqliteIndex, dict[int, str], Path]:
    """The corpus indexed in a throwaway SQLite file: (engine, index, topic of each chunk)."""
    [engine] = build_embedding_engines([MODEL], batch_size=64)
    assert isinstance(engine, EmbeddingEngine)
    await engine.start()
    plan = ChunkPlan().fitted(engine.max_input_tokens)
    overhead = (await engine.count_tokens([""]))[0]

    async def count(texts: list[str]) -> list[int]:
        return [n - overhead for n in await engine.count_tokens(texts)]

    docs = corpus()
    per_doc: list[list[Chunk]] = []
    for _topic, heading, body in docs:
        per_doc.append(await chunk_sections([(heading, body)], count, plan, overhead))
    flat = [c for cs in per_doc for c in cs]
    inputs = [f"{c.heading}\n{c.text}" if c.heading else c.text for c in flat]
    key = hashlib.sha256("\0".join(inputs).encode()).hexdigest()
    size = 4 * engine.dimensions
    cached = cache.read_bytes() if cache is not None and cache.exists() else b""  # noqa: ASYNC240
    if cached[:64].decode() == key:
        vectors = [cached[i : i + size] for i in range(64, len(cached), size)]
    else:
        t0 = time.perf_counter()
        vectors = await embed_all(engine, inputs)
        print(f"embedded {len(inputs)} chunks in {time.perf_counter() - t0:.0f} s")
        if cache is not None:
            cache.write_bytes(key.encode() + b"".join(vectors))  # noqa: ASYNC240
    tmp = Path(tempfile.mkdtemp(prefix="mg-retrieval-quality-"))
    db = tmp / "bench.db"
    url = f"sqlite+aiosqlite:///{db}"
    await asyncio.to_thread(migrate.upgrade, url)
    engine_db = storage_db.create_engine(url)
    index = SqliteIndex(db)
    await add_kb(engine_db, "kb-corpus")
    await add_docs(engine_db, "kb-corpus", [t for t, _, _ in docs])
    pos = 0
    for (topic, _, _), cs in zip(docs, per_doc, strict=True):
        await index.write_document(
            WS, "kb-corpus", topic, cs, vectors[pos : pos + len(cs)], engine.dimensions
        )
        pos += len(cs)
    async with engine_db.connect() as conn:
        rows = await conn.execute(text("SELECT id, document_id FROM knowledge_chunks"))
        topic_of = {int(cid): str(doc) for cid, doc in rows}
    await engine_db.dispose()
    print(f"corpus: {len(docs)} topics, {len(flat)} chunks (plan {plan.size}/{plan.overlap})")
    return engine, index, topic_of, db


async def rerank_study(
    qs: Sequence[Question],
    chosen: Sequence[int],
    lists: Sequence[Lists],
    hit: Callable[[int, Question], bool],
    index: SqliteIndex,
    n: int,
    threads: int,
) -> None:
    """The product default's top ``n`` re-ranked by the packaged chat model through
    ``serving.rerank.ChatReranker`` (a ``GenerationService`` over the llama.cpp engine, not
    metered), side by side with the fusion alone on the same questions."""
    from modelgrid.config import Settings
    from modelgrid.core.ids import new_request_id
    from modelgrid.core.types import CallContext
    from modelgrid.engines.catalog import CATALOG
    from modelgrid.engines.llamacpp import LlamaCppEngine
    from modelgrid.serving.generation import GenerationService
    from modelgrid.serving.meter import NullMeter
    from modelgrid.serving.metrics import Metrics
    from modelgrid.serving.models import ModelRegistry
    from modelgrid.serving.rerank import ChatReranker, reorder
    from modelgrid.tenancy.service import Principal

    chat = "qwen2.5-coder-0.5b-instruct"
    llm = LlamaCppEngine(chat, Settings().models_dir / CATALOG[chat].filename, n_threads=threads)
    await llm.start()
    reranker = ChatReranker(GenerationService(ModelRegistry([llm]), NullMeter(), Metrics()), chat)
    principal = Principal(key_id="k", workspace_id=WS, role="tenant", name="bench")
    reranked: dict[int, list[int]] = {}
    ms: list[float] = []
    tokens: list[int] = []
    for i in chosen:
        top = fused(DEFAULT, lists[i])[:n]
        rows = await index.chunks(WS, top)
        passages = [f"{rows[c].heading}\n{rows[c].text}" for c in top]
        ctx = CallContext(request_id=new_request_id(), client_request_id=None, started=0.0)
        judged = await reranker.judge(principal, qs[i].query, passages, ctx)
        reranked[i] = [top[j] for j in reorder(judged.scores)]
        ms.append(judged.elapsed_ms)
        tokens.append(judged.prompt_tokens)
        if len(ms) % 10 == 0:
            print(f"re-ranked {len(ms)}/{len(chosen)} questions", file=sys.stderr, flush=True)
    await llm.aclose()
    kinds = sorted({qs[i].kind for i in chosen})
    print(f"\n## re-ranking the product default's top {n} by {chat} ({len(chosen)} questions)\n")
    print("| method | " + " | ".join(f"{k} R@5 / MRR" for k in (*kinds, "all")) + " |")
    print("|---|" + "---|" * (len(kinds) + 1))
    for label, ranked in (
        ("product default", lambda i: fused(DEFAULT, lists[i])),
        (f"+ re-ranked top {n}", lambda i: reranked[i]),
    ):
        cells = []
        for kind in (*kinds, "all"):
            some = [i for i in chosen if kind == "all" or qs[i].kind == kind]
            r5, mrr = score(ranked, qs, some, hit)
            cells.append(f"{r5:.3f} / {mrr:.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    ordered = sorted(ms)
    print(
        f"re-ranking latency per query: p50 {ordered[len(ordered) // 2] / 1000:.1f} s, "
        f"p95 {ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] / 1000:.1f} s; "
        f"prompt tokens per query: mean {sum(tokens) / len(tokens):.0f}"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--cache", type=Path, help="keep the corpus's vectors in this file")
    ap.add_argument("--rerank", type=int, default=0, help="re-rank the fused top N (0: off)")
    ap.add_argument(
        "--rerank-on", default="test", help="questions re-ranked: test, all, or a kind's name"
    )
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: its default)")
    args = ap.parse_args()

    docs = corpus()
    pages = {t: f"{h}\n{b}" for t, h, b in docs}
    same = {t: frozenset(u for u in pages if pages[u] == pages[t]) for t in pages}
    qs = [Question(k, q, t) for k, q, t in questions(docs)] + paraphrases(pages)
    tune_topics, test_topics = split(list(pages))
    print(f"# retrieval quality {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores")
    print(
        "questions: "
        + ", ".join(f"{sum(q.kind == k for q in qs)} {k}" for k in KINDS)
        + f"; tune {sum(q.topic in tune_topics for q in qs)}, test "
        f"{sum(q.topic in test_topics for q in qs)}"
    )
    engine, index, topic_of, _db = await build(args.cache)

    def hit(cid: int, q: Question) -> bool:
        return topic_of.get(cid) in same[q.topic]

    lists: list[Lists] = []
    for q in qs:
        vector = (await engine.embed([q.query])).vectors[0]
        dense = await index.dense(WS, "kb-corpus", vector, engine.dimensions, READ)
        lexical = await index.lexical(WS, "kb-corpus", q.query, READ)
        lists.append(Lists([(c, 1.0 - d) for c, d in dense], lexical))

    sets = {
        "tune": [i for i, q in enumerate(qs) if q.topic in tune_topics],
        "test": [i for i, q in enumerate(qs) if q.topic in test_topics],
        "all": list(range(len(qs))),
    }

    def of_kind(name: str, kind: str) -> list[int]:
        return [i for i in sets[name] if kind == "all" or qs[i].kind == kind]

    # --- choose each family's parameters on the tune half ----------------------------------
    chosen: dict[str, Fusion] = {}
    for family, options in candidates().items():
        best = max(
            options,
            key=lambda f: (
                *score(lambda i, f=f: fused(f, lists[i]), qs, sets["tune"], hit),
                -f.depth,
            ),
        )
        chosen[family] = best
    print("\nchosen on the tune half:")
    for family, f in chosen.items():
        print(f"  {family}: {describe(f)}")
    print(f"  product default (knowledge.fusion.DEFAULT): {describe(DEFAULT)}")

    rankers: dict[str, Callable[[int], list[int]]] = {
        "dense (cosine)": lambda i: [c for c, _ in lists[i].dense],
        "BM25 (FTS5)": lambda i: [c for c, _ in lists[i].lexical],
        "RRF k=60, depth 50 (before)": lambda i: fused(Fusion("rrf", 0.5, 60, depth=50), lists[i]),
    }
    for family, f in chosen.items():
        rankers[f"{family} ({describe(f)})"] = lambda i, f=f: fused(f, lists[i])
    rankers["product default"] = lambda i: fused(DEFAULT, lists[i])

    print("\ncandidate depth, the product default's fusion otherwise (R@5 / MRR):\n")
    print("| depth | tune | test | all |\n|---|---|---|---|")
    for depth in DEPTHS:
        f = replace(DEFAULT, depth=depth)
        cells = [score(lambda i, f=f: fused(f, lists[i]), qs, sets[n], hit) for n in sets]
        print(f"| {depth} | " + " | ".join(f"{r:.3f} / {m:.3f}" for r, m in cells) + " |")

    for name in ("test", "all", "tune"):
        print(f"\n## {name} questions ({len(sets[name])})\n")
        print("| method | " + " | ".join(f"{k} R@5 / MRR" for k in (*KINDS, "all")) + " |")
        print("|---|" + "---|" * (len(KINDS) + 1))
        for label, ranked in rankers.items():
            cells = []
            for kind in (*KINDS, "all"):
                r5, mrr = score(ranked, qs, of_kind(name, kind), hit)
                cells.append(f"{r5:.3f} / {mrr:.3f}")
            print(f"| {label} | " + " | ".join(cells) + " |")

    if args.rerank:
        on = sets.get(args.rerank_on) or [i for i in sets["test"] if qs[i].kind == args.rerank_on]
        await rerank_study(qs, on, lists, hit, index, args.rerank, args.threads)
    await index.aclose()
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
