"""The knowledge index on PostgreSQL: full-text search, dense search through pgvector where
the server has it (else an exact scan in the process), and for large knowledge bases the
process's own indexes.

``PgIndex`` implements the ``KnowledgeIndex`` port over the gateway's PostgreSQL database
(pgvector: Debian 12 has no binary package; scripts/pgvector.sh builds Debian's source
package; docs/knowledge.md). Chunks live in
``knowledge_chunks`` as on SQLite; beside them, two tables the index creates on first use (as
the SQLite index creates its virtual tables), under an advisory lock so that gateways
starting together do not race:

- ``knowledge_pg_text``: each chunk's ``tsvector`` (``to_tsvector('english', heading and
  text)``: Snowball-stemmed, English stop words dropped) and length, with a GIN index; a
  query's words are OR-ed (``to_tsquery``) and ranked by BM25 (k1 = 1.2, b = 0.75, as FTS5's
  ``bm25()``; higher is better) from per-knowledge-base statistics kept beside it in
  ``knowledge_pg_stats`` and ``knowledge_pg_terms`` (``knowledge.pg_bm25``) — except for a
  knowledge base of ``lexical_min_chunks`` chunks and more, ranked from the process's BM25
  postings (``knowledge.lexical``) with the same statistics and scores: built from each
  chunk's ``tsvector`` (a lexeme's positions are its count, as in ``rank_sql``) and stored
  length, and scored for the query's distinct lexemes as ``to_tsvector('english')`` makes
  them (``rank_sql`` weighs each once);
- ``knowledge_pg_vectors``: each chunk's float32 vector as ``bytea``, with its knowledge base
  and length, and where the database has the ``vector`` extension (created on first use when
  the server has it and the role may) the same vector as pgvector's ``vector`` beside it.
  With pgvector, a dense query runs in the server (``knowledge.pg_vector``): an exact scan of
  the knowledge base under ``hnsw_min_chunks`` chunks, an HNSW index per embedding width
  above. Without it, a dense query reads the knowledge base's vectors and ranks them by
  cosine distance with numpy: exact, like sqlite-vec's scan, but every vector crosses the
  wire once a query (figures: docs/knowledge.md) — except for a knowledge base of
  ``ann_min_chunks`` chunks and more, searched through the process's IVF index
  (``knowledge.ann``), fresh by ``knowledge_index_revisions`` (``knowledge.revisions``:
  bumped in every write's and delete's transaction), as the postings are. Which path a
  process takes is logged once, at first use.

Every read takes the workspace and joins ``knowledge_chunks`` on it, so no query returns
another workspace's chunk; a document's chunks, text rows, BM25 statistics and vectors are
written in the transaction that marks it ``ready``, only while it is still ``indexing``, and
deleted in one transaction too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelgrid.knowledge import pg_bm25, pg_vector, revisions
from modelgrid.knowledge.ann import AnnCache
from modelgrid.knowledge.chunking import Chunk
from modelgrid.knowledge.index import StoredChunk
from modelgrid.knowledge.lexical import LexicalCache
from modelgrid.knowledge.pg_vector import PgVectorSettings

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W_]+")
MAX_QUERY_TERMS = 64
_LOCK_KEY = 0x6D67_6B69  # "mgki": the advisory lock of the tables' creation
_CREATE = (
    *pg_bm25.CREATE,
    "CREATE TABLE IF NOT EXISTS knowledge_pg_vectors ("
    " chunk_id bigint PRIMARY KEY, knowledge_base_id varchar(40) NOT NULL,"
    " dims integer NOT NULL, embedding bytea NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_knowledge_pg_vectors_kb"
    " ON knowledge_pg_vectors (knowledge_base_id, dims)",
)


def ts_query(query: str) -> str | None:
    """A user's text as a ``to_tsquery`` string: its words OR-ed (``None``: no word). Only
    letters and digits reach PostgreSQL's parser; it stems them and drops stop words."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:MAX_QUERY_TERMS]
    return " | ".join(words) if words else None


def _cosine_top(
    rows: list[tuple[int, bytes]], vector: bytes, dims: int, k: int
) -> list[tuple[int, float]]:
    """The ``k`` nearest rows by cosine distance (``1 - cos``), nearest first, ties by id."""
    import numpy as np  # the ``knowledge`` extra, imported where used (as ``knowledge.extract``)

    if not rows:
        return []
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, dims)
    query = np.frombuffer(vector, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(query))
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(norms > 0, (matrix @ query) / norms, 0.0)
    distance = 1.0 - cos
    ids = np.array([r[0] for r in rows])
    order = np.lexsort((ids, distance))[:k]
    return [(int(ids[i]), float(distance[i])) for i in order]


class PgIndex:
    """``KnowledgeIndex`` on PostgreSQL (see the module docstring).

    Args:
        engine: The gateway's database engine (its own pool; the index opens no other).
        ann: The process's approximate nearest-neighbour graphs for large knowledge bases
            (``knowledge.ann``; asked first, pgvector or not; ``None``: every dense search
            is pgvector's, or the exact scan).
        lexical: The process's BM25 postings of large knowledge bases (``knowledge.lexical``;
            ``None``: every BM25 search is ``pg_bm25.rank_sql``).
        pgvector: Dense search through pgvector (``knowledge.pg_vector``): ``None`` (the
            default) where the server has the extension (``CREATE EXTENSION`` is tried, and
            needs a superuser unless it exists); ``False``: the ``bytea`` path above even so
            (vectors are still written to ``vec`` where the column exists, for the others).
        vector_settings: The pgvector path's threshold and HNSW parameters.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        ann: AnnCache | None = None,
        lexical: LexicalCache | None = None,
        *,
        pgvector: bool | None = None,
        vector_settings: PgVectorSettings | None = None,
    ) -> None:
        self._engine = engine
        self._ready = False
        self._ann = ann
        self._lexical = lexical
        self._want_pgvector = pgvector
        self.vector_settings = vector_settings or PgVectorSettings()
        self._vec = False  # the table has the ``vec vector`` column (written on every insert)
        self.pgvector = False  # dense search goes through pgvector (known after first use)
        self._hnsw_dims: set[int] = set()  # widths whose HNSW index is known to exist
        self.hnsw_served = 0  # dense searches HNSW answered (tests, metrics)
        self._source = _Vectors(self)
        self._terms = _Terms(self)

    async def _tables(self) -> None:
        if self._ready:
            return
        async with self._engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            for statement in _CREATE:
                await conn.execute(text(statement))
            had = await conn.scalar(text("SELECT to_regclass('knowledge_index_revisions')"))
            await conn.execute(text(revisions.CREATE))
            if had is None:  # a database from before the table: its knowledge bases at 0
                await conn.execute(text(revisions.BACKFILL))
            why = await self._vector_column(conn)
        self.pgvector = self._vec and self._want_pgvector is not False
        if self.pgvector:
            logger.info(
                "knowledge index on PostgreSQL: dense search through pgvector (exact in the "
                "server under %d chunks, HNSW above)%s",
                self.vector_settings.hnsw_min_chunks,
                "; the process's IVF index first for large knowledge bases"
                if self._ann is not None
                else "",
            )
        else:
            logger.info(
                "knowledge index on PostgreSQL: bytea vectors, dense search in the process "
                "(exact scan%s): %s",
                ", IVF for large knowledge bases" if self._ann is not None else "",
                why or "pgvector turned off",
            )
        self._ready = True

    async def _vector_column(self, conn: AsyncConnection) -> str:
        """Create the ``vector`` extension where the server has it (unless turned off) and,
        where the database has it, the ``vec`` column (backfilled from the ``bytea``): sets
        ``_vec``, and says why not when it does not."""
        has = "SELECT 1 FROM pg_extension WHERE extname = 'vector'"
        why = ""
        if not await conn.scalar(text(has)) and self._want_pgvector is not False:
            available = "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            if not await conn.scalar(text(available)):
                why = "pgvector is not installed on the server (scripts/pgvector.sh)"
            else:
                try:
                    async with conn.begin_nested():
                        await conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
                except DBAPIError as exc:  # not a superuser, typically
                    why = f"CREATE EXTENSION vector failed: {exc.orig}"
        if not await conn.scalar(text(has)):
            return why or "the database has no vector extension"
        if not await conn.scalar(text(pg_vector.HAS_COLUMN)):
            for statement in pg_vector.ADD_COLUMN:
                await conn.execute(text(statement))
        while rows := (await conn.execute(text(pg_vector.BACKFILL_READ))).all():
            await conn.execute(
                text(pg_vector.BACKFILL_WRITE),
                [{"c": int(r[0]), "v": pg_vector.literal(bytes(r[1]))} for r in rows],
            )
        self._vec = True
        return ""

    async def _hnsw_index(self, dims: int) -> bool:
        """Make sure the HNSW index of ``dims``-wide vectors exists (``False``: too wide for
        one). Made when the first vector of that width is written, it is then kept up by
        every insert; over rows already there (a database upgraded in place), it is built
        once, holding off this table's writes meanwhile."""
        if dims > pg_vector.MAX_HNSW_DIMS:
            return False
        if dims in self._hnsw_dims:
            return True
        name = pg_vector.index_name(dims)
        async with self._engine.begin() as conn:
            if await conn.scalar(text("SELECT to_regclass(:n)"), {"n": name}) is None:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
                await conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
                await conn.execute(text(pg_vector.create_index_sql(dims, self.vector_settings)))
        self._hnsw_dims.add(dims)
        return True

    # --- writes ------------------------------------------------------------------------------

    async def write_document(
        self,
        workspace_id: str,
        knowledge_base_id: str,
        document_id: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[bytes],
        dimensions: int,
    ) -> bool:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        await self._tables()
        if self._vec:
            await self._hnsw_index(dimensions)
        insert_vector = "INSERT INTO knowledge_pg_vectors (chunk_id, knowledge_base_id, dims, " + (
            "embedding, vec) VALUES (:c, :kb, :dims, :v, CAST(CAST(:vt AS text) AS vector))"
            if self._vec
            else "embedding) VALUES (:c, :kb, :dims, :v)"
        )
        async with self._engine.begin() as conn:
            status = (
                await conn.execute(
                    text(
                        "SELECT status FROM knowledge_documents WHERE id = :d "
                        "AND workspace_id = :ws FOR UPDATE"
                    ),
                    {"d": document_id, "ws": workspace_id},
                )
            ).scalar()
            if status != "indexing":
                return False  # deleted or cancelled meanwhile: nothing written
            ids: list[int] = []
            for no, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True)):
                cid = (
                    await conn.execute(
                        text(
                            "INSERT INTO knowledge_chunks (workspace_id, knowledge_base_id, "
                            "document_id, ordinal, heading, text, tokens) VALUES "
                            "(:ws, :kb, :d, :no, :heading, :text, :tokens) RETURNING id"
                        ),
                        {
                            "ws": workspace_id,
                            "kb": knowledge_base_id,
                            "d": document_id,
                            "no": no,
                            "heading": chunk.heading,
                            "text": chunk.text,
                            "tokens": chunk.tokens,
                        },
                    )
                ).scalar_one()
                ids.append(cid)
                searchable = f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text
                await conn.execute(
                    text(pg_bm25.INSERT_TEXT), {"c": cid, "kb": knowledge_base_id, "t": searchable}
                )
                row = {"c": cid, "kb": knowledge_base_id, "dims": dimensions, "v": vector}
                if self._vec:
                    row["vt"] = pg_vector.literal(vector)
                await conn.execute(text(insert_vector), row)
            await conn.execute(text(revisions.BUMP), {"kb": knowledge_base_id, "n": len(chunks)})
            # after the revision row: every write and delete locks revisions, stats, terms
            for statement in (pg_bm25.ADD_STATS, pg_bm25.ADD_TERMS):
                await conn.execute(text(statement), {"kb": knowledge_base_id, "ids": ids})
            await conn.execute(
                text(
                    "UPDATE knowledge_documents SET status = 'ready', error = NULL, "
                    "sections = NULL, chunks_total = :n, chunks_done = :n, indexed_at = :now, "
                    "lease_owner = NULL, lease_until = NULL WHERE id = :d"
                ),
                {"n": len(chunks), "now": datetime.now(UTC), "d": document_id},
            )
        return True

    async def _delete_chunks(
        self, conn: AsyncConnection, where: str, args: dict[str, str], *, stats: bool = True
    ) -> None:
        chosen = f"SELECT id FROM knowledge_chunks WHERE {where}"
        for kb, n in (await conn.execute(text(revisions.COUNT.format(where=where)), args)).all():
            await conn.execute(text(revisions.BUMP), {"kb": kb, "n": -int(n)})
        for statement in pg_bm25.subtract(chosen) if stats else ():
            await conn.execute(text(statement), args)
        for table in ("knowledge_pg_text", "knowledge_pg_vectors"):
            await conn.execute(text(f"DELETE FROM {table} WHERE chunk_id IN ({chosen})"), args)
        await conn.execute(text(f"DELETE FROM knowledge_chunks WHERE {where}"), args)

    async def delete_document(self, workspace_id: str, document_id: str) -> bool:
        await self._tables()
        async with self._engine.begin() as conn:
            args = {"d": document_id, "ws": workspace_id}
            await self._delete_chunks(conn, "document_id = :d AND workspace_id = :ws", args)
            gone = await conn.execute(
                text("DELETE FROM knowledge_documents WHERE id = :d AND workspace_id = :ws"), args
            )
            return bool(gone.rowcount)

    async def delete_knowledge_base(self, workspace_id: str, knowledge_base_id: str) -> bool:
        await self._tables()
        async with self._engine.begin() as conn:
            args = {"kb": knowledge_base_id, "ws": workspace_id}
            where = "knowledge_base_id = :kb AND workspace_id = :ws"
            await self._delete_chunks(conn, where, args, stats=False)
            for statement in pg_bm25.DROP_STATS:  # the whole knowledge base's: no subtracting
                await conn.execute(text(statement), args)
            await conn.execute(
                text(
                    "DELETE FROM knowledge_documents WHERE knowledge_base_id = :kb "
                    "AND workspace_id = :ws"
                ),
                args,
            )
            gone = await conn.execute(
                text("DELETE FROM knowledge_bases WHERE id = :kb AND workspace_id = :ws"), args
            )
            return bool(gone.rowcount)

    # --- reads -------------------------------------------------------------------------------

    @staticmethod
    def _only(documents: Sequence[str] | None) -> tuple[str, dict[str, Any]]:
        if documents is None:
            return "", {}
        return "AND c.document_id IN :docs ", {"docs": list(documents)}

    async def dense(
        self,
        workspace_id: str,
        knowledge_base_id: str,
        vector: bytes,
        dimensions: int,
        k: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        if documents is not None and not documents:
            return []
        await self._tables()
        # the process's IVF index first, pgvector or not: on the bench's 100k set it answers
        # in 2.2 ms at recall@50 0.999, pgvector's HNSW in 6.4 ms at 0.85 (ef_search 400)
        if documents is None and self._ann is not None:
            hits = await self._ann.search(
                self._source, workspace_id, knowledge_base_id, vector, dimensions, k
            )
            if hits is not None:
                return hits
        if self.pgvector:
            return await self._dense_pgvector(
                workspace_id, knowledge_base_id, vector, dimensions, k, documents
            )
        only, extra = self._only(documents)
        stmt = text(
            "SELECT v.chunk_id, v.embedding FROM knowledge_pg_vectors v "
            "JOIN knowledge_chunks c ON c.id = v.chunk_id "
            "WHERE v.knowledge_base_id = :kb AND v.dims = :dims AND c.workspace_id = :ws " + only
        )
        if documents is not None:
            stmt = stmt.bindparams(bindparam("docs", expanding=True))
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    stmt, {"kb": knowledge_base_id, "dims": dimensions, "ws": workspace_id, **extra}
                )
            ).all()
        found = [(int(r[0]), bytes(r[1])) for r in rows]
        return await asyncio.to_thread(_cosine_top, found, vector, dimensions, k)

    async def _dense_pgvector(
        self,
        workspace_id: str,
        knowledge_base_id: str,
        vector: bytes,
        dimensions: int,
        k: int,
        documents: Sequence[str] | None,
    ) -> list[tuple[int, float]]:
        """``dense`` through pgvector: HNSW for a knowledge base of ``hnsw_min_chunks`` chunks
        and more (with ``documents``, when they hold that many: a few documents' chunks are
        scanned exactly rather than sought among the whole width's index; the exact scan too
        when HNSW finds fewer than ``k``), else the exact scan."""
        s = self.vector_settings
        only = documents is not None
        args: dict[str, Any] = {
            "q": pg_vector.literal(vector),
            "kb": knowledge_base_id,
            "ws": workspace_id,
            "k": k,
        }
        if documents is not None:
            args["docs"] = list(documents)
        async with self._engine.connect() as conn:
            state = (await conn.execute(text(revisions.STATE), {"kb": knowledge_base_id})).first()
            large = state is not None and int(state[1]) >= s.hnsw_min_chunks
            if large and only:
                count = text(pg_vector.COUNT_DOCUMENTS).bindparams(
                    bindparam("docs", expanding=True)
                )
                large = int(await conn.scalar(count, args) or 0) >= s.hnsw_min_chunks
        if large and await self._hnsw_index(dimensions):
            stmt = text(pg_vector.hnsw_sql(dimensions, only))
            if only:
                stmt = stmt.bindparams(bindparam("docs", expanding=True))
            scan = {"ef": str(max(s.ef_search, k)), "mst": str(s.max_scan_tuples)}
            async with self._engine.begin() as conn:
                await conn.execute(text(pg_vector.SCAN_SETTINGS), scan)
                rows = (await conn.execute(stmt, args)).all()
            hits = [(int(r[0]), 1.0 if math.isnan(r[1]) else float(r[1])) for r in rows]
            if len(hits) >= k:
                self.hnsw_served += 1
                return sorted(hits, key=lambda h: (h[1], h[0]))[:k]
        stmt = text(pg_vector.exact_sql(only))
        if only:
            stmt = stmt.bindparams(bindparam("docs", expanding=True))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt, {**args, "dims": dimensions})).all()
        return [(int(r[0]), float(r[1])) for r in rows]

    async def lexical(
        self,
        workspace_id: str,
        knowledge_base_id: str,
        query: str,
        k: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        """The ``k`` best chunks of the knowledge base by BM25 (k1 = 1.2, b = 0.75; the formula
        and its source: ``knowledge.pg_bm25``): ``(chunk id, score)``, best first, ties by
        chunk id; ``[]`` for a query without a word or an empty ``documents``. A knowledge
        base the process holds postings of (``knowledge.lexical``) is ranked from them, with
        the same statistics and scores; any other runs ``pg_bm25.rank_sql``."""
        terms = ts_query(query)
        if terms is None or (documents is not None and not documents):
            return []
        await self._tables()
        if self._lexical is not None:
            hits = await self._lexical.search(
                self._terms,
                workspace_id,
                knowledge_base_id,
                await self._terms.lexemes(terms),
                k,
                documents,
            )
            if hits is not None:
                return hits
        only, extra = self._only(documents)
        stmt = text(pg_bm25.rank_sql(only))
        if documents is not None:
            stmt = stmt.bindparams(bindparam("docs", expanding=True))
        args = {"q": terms, "kb": knowledge_base_id, "ws": workspace_id, "k": k, **extra}
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt, args)).all()
        return [(int(r[0]), float(r[1])) for r in rows]

    async def chunks(self, workspace_id: str, ids: Sequence[int]) -> dict[int, StoredChunk]:
        if not ids:
            return {}
        # by the primary key alone, the workspace checked here: with the workspace in the
        # WHERE, a planner on stale statistics ANDed in the workspace index's bitmap (every
        # chunk of a large workspace: 7.7 ms at 100k chunks, bench/RESULTS.md, #13)
        stmt = text(
            "SELECT id, document_id, knowledge_base_id, ordinal, heading, text, tokens, "
            "workspace_id FROM knowledge_chunks WHERE id IN :ids"
        ).bindparams(bindparam("ids", expanding=True))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt, {"ids": list(ids)})).all()
        return {
            int(r[0]): StoredChunk(int(r[0]), r[1], r[2], int(r[3]), r[4], r[5], int(r[6]))
            for r in rows
            if r[7] == workspace_id
        }

    async def aclose(self) -> None:
        """The ANN graphs' and postings' builds stopped (the engine is the gateway's: not
        closed)."""
        if self._ann is not None:
            await self._ann.aclose()
        if self._lexical is not None:
            await self._lexical.aclose()


class _Vectors:
    """The ``knowledge.ann.VectorSource`` of a ``PgIndex`` (one query each)."""

    _READ = (
        "SELECT v.chunk_id, c.document_id{embedding} FROM knowledge_pg_vectors v "
        "JOIN knowledge_chunks c ON c.id = v.chunk_id "
        "WHERE v.knowledge_base_id = :kb AND v.dims = :dims AND c.workspace_id = :ws"
    )

    def __init__(self, index: PgIndex) -> None:
        self._engine = index._engine

    async def state(self, knowledge_base_id: str) -> tuple[int, int] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(text(revisions.STATE), {"kb": knowledge_base_id})).first()
        return (int(row[0]), int(row[1])) if row else None

    async def ids(
        self, workspace_id: str, knowledge_base_id: str, dims: int
    ) -> list[tuple[int, str]]:
        args = {"kb": knowledge_base_id, "dims": dims, "ws": workspace_id}
        async with self._engine.connect() as conn:
            rows = (await conn.execute(text(self._READ.format(embedding="")), args)).all()
        return [(int(r[0]), str(r[1])) for r in rows]

    async def vectors(
        self, workspace_id: str, knowledge_base_id: str, dims: int, ids: Sequence[int] | None
    ) -> tuple[list[tuple[int, str]], bytes]:
        args: dict[str, Any] = {"kb": knowledge_base_id, "dims": dims, "ws": workspace_id}
        read = self._READ.format(embedding=", v.embedding")
        rows: list[Any] = []
        async with self._engine.connect() as conn:
            if ids is None:
                rows = list((await conn.execute(text(read), args)).all())
            for i in range(0, len(ids or ()), 5000):  # under asyncpg's 32,767 parameters
                stmt = text(read + " AND v.chunk_id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                )
                part = [int(x) for x in (ids or ())[i : i + 5000]]
                rows += (await conn.execute(stmt, {**args, "ids": part})).all()
        return [(int(r[0]), str(r[1])) for r in rows], b"".join(bytes(r[2]) for r in rows)


class _Terms:
    """The ``knowledge.lexical.TermSource`` of a ``PgIndex``: each chunk's lexemes, read from
    its ``tsvector`` as ``pg_bm25.rank_sql`` counts them (a lexeme's positions; 1 if it has
    none), and the query's."""

    # "lexeme:count lexeme:count" (``knowledge.lexical`` parses ``(\S+):(\d+)``: a lexeme
    # never holds a space; one ending in ":digits" still parses, the pattern being greedy)
    _READ = (
        "SELECT c.id, c.document_id, t.length, (SELECT coalesce(string_agg(u.lexeme || ':' "
        "|| coalesce(array_length(u.positions, 1), 1), ' '), '') FROM unnest(t.tsv) u) "
        "FROM knowledge_chunks c JOIN knowledge_pg_text t ON t.chunk_id = c.id "
        "WHERE c.knowledge_base_id = :kb AND c.workspace_id = :ws"
    )

    def __init__(self, index: PgIndex) -> None:
        self._engine = index._engine
        self.state = _Vectors(index).state

    async def lexemes(self, terms: str) -> list[str]:
        """The distinct lexemes of a ``ts_query`` string, as ``rank_sql`` weighs them: each
        once, however often the query names it (``knowledge.lexical`` counts a repeated stem
        again, so it gets them deduplicated)."""
        stmt = text("SELECT tsvector_to_array(to_tsvector('english', :q))")
        async with self._engine.connect() as conn:
            found = (await conn.execute(stmt, {"q": terms})).scalar()
        return [str(x) for x in found or ()]

    async def ids(self, workspace_id: str, knowledge_base_id: str) -> list[tuple[int, str]]:
        stmt = text(
            "SELECT id, document_id FROM knowledge_chunks "
            "WHERE knowledge_base_id = :kb AND workspace_id = :ws"
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt, {"kb": knowledge_base_id, "ws": workspace_id})).all()
        return [(int(r[0]), str(r[1])) for r in rows]

    async def terms(
        self, workspace_id: str, knowledge_base_id: str, ids: Sequence[int] | None
    ) -> list[tuple[int, str, int, str]]:
        args: dict[str, Any] = {"kb": knowledge_base_id, "ws": workspace_id}
        rows: list[Any] = []
        async with self._engine.connect() as conn:
            if ids is None:
                rows = list((await conn.execute(text(self._READ), args)).all())
            for i in range(0, len(ids or ()), 5000):  # under asyncpg's 32,767 parameters
                stmt = text(self._READ + " AND c.id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                )
                part = [int(x) for x in (ids or ())[i : i + 5000]]
                rows += (await conn.execute(stmt, {**args, "ids": part})).all()
        return [(int(r[0]), str(r[1]), int(r[2]), str(r[3])) for r in rows]


__all__ = ["PgIndex", "ts_query"]
