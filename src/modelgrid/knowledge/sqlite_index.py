"""``KnowledgeIndex`` on SQLite: sqlite-vec for vectors, FTS5 for BM25.

The index lives in the gateway's own SQLite file, beside ``knowledge_chunks`` (created by
the migrations). It opens its own connection with the ``sqlite-vec`` extension loaded, used
by one worker thread, so writes are serialized and never block the event loop.

**One SQLite library per process.** The connection is Python's own ``sqlite3``, the library
SQLAlchemy's connections use too: two copies of SQLite in one process on one file can corrupt
it (closing a file in one copy drops the other's POSIX locks: sqlite.org/howtocorrupt.html,
2.2.1), so no second SQLite (``sqlean-py``, ``pysqlite3``) is used. CPython built without
``--enable-loadable-sqlite-extensions`` has no ``enable_load_extension``; then the extension
is enabled through the C API of the very library ``_sqlite3`` is linked with
(``sqlite3_enable_load_extension`` on the connection's handle, for this connection only), and
loaded with ``load_extension()``.

On first use it creates:

- ``knowledge_fts``: FTS5 over ``text`` (a copy of each chunk's heading and text) and ``kb``
  (its knowledge base as one token, ``kb_token``), Porter-stemmed ``unicode61`` tokens; row
  id = chunk id. A query MATCHes ``kb`` and its tokens together, so FTS5 keeps to the
  knowledge base without a join per matching row; the workspace is checked on the top ``k``.
  A file from before (a one-column table) is rebuilt on open (``_ensure_tables``). FTS5's own
  ``bm25()`` pools every knowledge base's statistics, so FTS5 only finds the candidates: they
  are scored with BM25 (``knowledge.bm25``: k1 = 1.2, b = 0.75) from the knowledge base's own (``knowledge_fts_terms``, ``knowledge_fts_stats``:
  ``knowledge.fts_stats``, kept in each write and delete transaction, backfilled on open);
  a knowledge base of ``lexical``'s ``min_chunks`` chunks and more is searched through the
  process's postings instead (``knowledge.lexical``), with the same statistics and scores.
- ``knowledge_vec_<dims>``: a ``vec0`` table per embedding dimension, cosine distance, the
  knowledge base as its partition key (a query scans only that knowledge base's vectors,
  exactly); a large knowledge base is searched through ``knowledge.ann``'s IVF index instead.
- ``knowledge_index_revisions`` (``knowledge.revisions``): bumped with every write and delete.

Every read is filtered by knowledge base and checked against ``knowledge_chunks`` on the
workspace, so no query returns another workspace's chunk.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import re
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from modelgrid.core.errors import ServiceUnavailableError
from modelgrid.knowledge import fts_stats, fts_tokens, revisions
from modelgrid.knowledge.ann import AnnCache
from modelgrid.knowledge.chunking import Chunk
from modelgrid.knowledge.index import StoredChunk
from modelgrid.knowledge.lexical import LexicalCache

_T = TypeVar("_T")
_TERM = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 64
# English function words left out of BM25 queries: they match most chunks, so they cost the
# most to score and move the ranking least (their IDF is near zero).
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "so",
        "such",
        "than",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
    ]
)
BUSY_TIMEOUT_S = 30.0
READERS = 2


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite[+driver]:///path`` URL (``None``: not a SQLite file URL)."""
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def query_tokens(text: str) -> list[str]:
    """A user's text as BM25 query terms: its words (``\\w+``, lower-cased, each once),
    ``STOP_WORDS`` left out unless nothing else is left, split into FTS5's unicode61 tokens
    (``sys_path``: ``sys`` and ``path``, each its own term, not a phrase), at most
    ``MAX_QUERY_TERMS`` (unstemmed: FTS5 stems a query's terms itself)."""
    words = list(dict.fromkeys(t.lower() for t in _TERM.findall(text)))
    chosen = [w for w in words if w not in STOP_WORDS] or words
    tokens = dict.fromkeys(t for w in chosen for t in fts_tokens.words(w))
    return list(tokens)[:MAX_QUERY_TERMS]


def fts_query(text: str) -> str | None:
    """A user's text as an FTS5 query: each of its ``query_tokens`` a quoted term, OR-ed
    (BM25 ranks them); ``None`` when it has none."""
    terms = query_tokens(text)
    if not terms:
        return None
    return " OR ".join('"' + t + '"' for t in terms)  # tokens: letters and digits only


def _allow_extensions(conn: sqlite3.Connection, on: bool) -> None:
    """``conn.enable_load_extension(on)``, also on a CPython built without it (see the module
    docstring).

    Raises:
        ServiceUnavailableError: neither way is available (not CPython, or its ``_sqlite3``
            exports no SQLite C API).
    """
    method = getattr(conn, "enable_load_extension", None)
    if method is not None:
        method(on)
        return
    import _sqlite3

    try:
        lib = ctypes.CDLL(_sqlite3.__file__)  # its SQLite: the same copy, linked or built in
        enable = lib.sqlite3_enable_load_extension
        version = lib.sqlite3_libversion
    except (OSError, AttributeError) as exc:
        raise ServiceUnavailableError(_NO_EXTENSIONS) from exc
    version.restype = ctypes.c_char_p
    if sys.implementation.name != "cpython" or version().decode() != sqlite3.sqlite_version:
        raise ServiceUnavailableError(_NO_EXTENSIONS)
    enable.argtypes = [ctypes.c_void_p, ctypes.c_int]
    enable.restype = ctypes.c_int
    # pysqlite_Connection: PyObject_HEAD, then ``sqlite3 *db`` (CPython 3.8 to 3.13)
    handle = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value
    if not handle or enable(handle, 1 if on else 0) != 0:
        raise ServiceUnavailableError(_NO_EXTENSIONS)


_NO_EXTENSIONS = (
    "Knowledge bases need SQLite extensions (sqlite-vec), which this Python's sqlite3 cannot "
    "load: use a CPython, or one built with --enable-loadable-sqlite-extensions."
)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        import sqlite_vec  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - the knowledge extra is not installed
        raise ServiceUnavailableError(
            "Knowledge bases need the 'knowledge' extra (sqlite-vec): "
            "pip install 'modelgrid[knowledge]'."
        ) from exc
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    conn.isolation_level = None  # explicit BEGIN / COMMIT
    _allow_extensions(conn, True)
    try:
        conn.execute("SELECT load_extension(?)", (sqlite_vec.loadable_path(),))
    finally:
        _allow_extensions(conn, False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    _ensure_tables(conn)
    return conn


def kb_token(knowledge_base_id: str) -> str:
    """The knowledge base as one FTS5 token of ``knowledge_fts.kb``: 19 or 20 decimal digits of
    its SHA-256 (digits: the Porter stemmer leaves them alone, unicode61 keeps them whole)."""
    digest = hashlib.sha256(knowledge_base_id.encode()).digest()
    return str(int.from_bytes(digest[:8], "big"))


_FTS = "CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5(text, kb, tokenize='porter unicode61')"


def _ensure_tables(conn: sqlite3.Connection) -> None:
    """Create the index's tables, or bring an older file's up to date, once (one
    ``BEGIN IMMEDIATE``: gateways opening one file together do it one after the other).

    - ``knowledge_fts`` without its ``kb`` column (before #13) is rebuilt with it from its own
      rows (its text) and ``knowledge_chunks`` (their knowledge base);
    - ``knowledge_index_revisions`` starts at revision 0 with each knowledge base's chunk count;
    - ``knowledge_fts_terms`` and ``knowledge_fts_stats`` are filled from ``knowledge_chunks``
      (each chunk's text tokenized here: ``knowledge.fts_stats``).
    """
    if _tables_current(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _tables_current(conn):
            columns = [r[1] for r in conn.execute("PRAGMA table_xinfo(knowledge_fts)")]
            if columns and "kb" not in columns:  # the one-column table of before
                conn.execute(_FTS.format(name="knowledge_fts_kb"))
                kb_of = dict(conn.execute("SELECT id, knowledge_base_id FROM knowledge_chunks"))
                rows = conn.execute("SELECT rowid, text FROM knowledge_fts").fetchall()
                conn.executemany(
                    "INSERT INTO knowledge_fts_kb (rowid, text, kb) VALUES (?, ?, ?)",
                    [(r, t, kb_token(kb_of[r])) for r, t in rows if r in kb_of],
                )
                conn.execute("DROP TABLE knowledge_fts")
                conn.execute("ALTER TABLE knowledge_fts_kb RENAME TO knowledge_fts")
            conn.execute(_FTS.format(name="knowledge_fts"))
            had = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'knowledge_index_revisions'"
            ).fetchone()
            conn.execute(revisions.CREATE)
            if had is None:
                conn.execute(revisions.BACKFILL)
            if not _has(conn, "knowledge_fts_stats"):
                _backfill_stats(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _has(conn: sqlite3.Connection, table: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None
    )


def _backfill_stats(conn: sqlite3.Connection) -> None:
    """``knowledge_fts_terms`` and ``knowledge_fts_stats`` of every chunk already written."""
    for statement in fts_stats.CREATE:
        conn.execute(statement)
    totals: dict[str, list[int]] = {}
    rows = conn.execute("SELECT id, knowledge_base_id, heading, text FROM knowledge_chunks")
    for cid, kb, heading, text in rows.fetchall():
        length, terms = fts_stats.counts(f"{heading}\n{text}" if heading else text)
        conn.execute(fts_stats.INSERT, (cid, length, terms))
        total = totals.setdefault(kb, [0, 0])
        total[0] += 1
        total[1] += length
    for kb, (n, length) in totals.items():
        conn.execute(fts_stats.ADD, {"kb": kb, "n": n, "len": length})


def _tables_current(conn: sqlite3.Connection) -> bool:
    columns = [r[1] for r in conn.execute("PRAGMA table_xinfo(knowledge_fts)")]
    return (
        _has(conn, "knowledge_index_revisions")
        and _has(conn, "knowledge_fts_stats")
        and "kb" in columns
    )


class SqliteIndex:
    """See the module docstring.

    Args:
        path: The SQLite database file (migrated: ``knowledge_chunks`` exists).
        ann: The process's approximate nearest-neighbour graphs for large knowledge bases
            (``knowledge.ann``; ``None``: every dense search is the exact scan).
        lexical: The process's BM25 postings of large knowledge bases (``knowledge.lexical``;
            ``None``: every BM25 search is FTS5's MATCH, scored from the statistics tables).
    """

    def __init__(
        self, path: Path, ann: AnnCache | None = None, lexical: LexicalCache | None = None
    ) -> None:
        self.path = path
        self._path = path
        self._ann = ann
        self._lexical = lexical
        self._source = _Vectors(self)
        self._terms = _Terms(self)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="knowledge-index")
        self._conn: Any = None
        # reads on their own connections (WAL: readers run beside the writer and each other;
        # sqlite3 releases the GIL while a statement runs), one per reader thread
        self._readers = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="knowledge-read")
        self._local = threading.local()
        self._read_conns: list[Any] = []
        self._read_lock = threading.Lock()
        self._vec_tables: set[int] = set()

    async def _run(self, fn: Callable[[Any], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[Any], _T]) -> _T:
        if self._conn is None:
            self._conn = _connect(self._path)
        return fn(self._conn)

    async def _read(self, fn: Callable[[Any], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._call_read, fn)

    def _call_read(self, fn: Callable[[Any], _T]) -> _T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self._path)
            with self._read_lock:
                self._read_conns.append(conn)
        return fn(conn)

    def _vec_table(self, conn: Any, dims: int) -> str:
        name = f"knowledge_vec_{int(dims)}"
        if dims not in self._vec_tables:
            conn.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING vec0("
                "chunk_id integer primary key, knowledge_base_id text partition key, "
                f"embedding float[{int(dims)}] distance_metric=cosine)"
            )
            self._vec_tables.add(dims)
        return name

    def _all_vec_tables(self, conn: Any) -> list[str]:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE name GLOB 'knowledge_vec_*' "
            "AND sql LIKE 'CREATE VIRTUAL TABLE%'"
        ).fetchall()
        return [r[0] for r in rows]

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
        now = datetime.now(UTC).isoformat(sep=" ")
        token = kb_token(knowledge_base_id)
        # the chunks' FTS5 terms, counted before the write transaction (off its lock)
        counted = await asyncio.to_thread(
            lambda: [
                fts_stats.counts(f"{c.heading}\n{c.text}" if c.heading else c.text) for c in chunks
            ]
        )

        def write(conn: Any) -> bool:
            table = self._vec_table(conn, dimensions)
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT status FROM knowledge_documents WHERE id = ? AND workspace_id = ?",
                    (document_id, workspace_id),
                ).fetchone()
                if row is None or row[0] != "indexing":
                    conn.execute("ROLLBACK")
                    return False
                total = 0
                for no, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True)):
                    cur = conn.execute(
                        "INSERT INTO knowledge_chunks (workspace_id, knowledge_base_id, "
                        "document_id, ordinal, heading, text, tokens) VALUES (?,?,?,?,?,?,?)",
                        (
                            workspace_id,
                            knowledge_base_id,
                            document_id,
                            no,
                            chunk.heading,
                            chunk.text,
                            chunk.tokens,
                        ),
                    )
                    cid = cur.lastrowid
                    searchable = f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text
                    conn.execute(
                        "INSERT INTO knowledge_fts (rowid, text, kb) VALUES (?, ?, ?)",
                        (cid, searchable, token),
                    )
                    length, terms = counted[no]
                    conn.execute(fts_stats.INSERT, (cid, length, terms))
                    total += length
                    conn.execute(
                        f"INSERT INTO {table} (chunk_id, knowledge_base_id, embedding) "
                        "VALUES (?, ?, ?)",
                        (cid, knowledge_base_id, vector),
                    )
                conn.execute(revisions.BUMP, {"kb": knowledge_base_id, "n": len(chunks)})
                conn.execute(
                    fts_stats.ADD, {"kb": knowledge_base_id, "n": len(chunks), "len": total}
                )
                conn.execute(
                    "UPDATE knowledge_documents SET status = 'ready', error = NULL, "
                    "sections = NULL, chunks_total = ?, chunks_done = ?, indexed_at = ?, "
                    "lease_owner = NULL, lease_until = NULL WHERE id = ?",
                    (len(chunks), len(chunks), now, document_id),
                )
                conn.execute("COMMIT")
                return True
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        return await self._run(write)

    def _delete_chunks(self, conn: Any, where: str, args: tuple[str, ...]) -> None:
        """Delete the chosen chunks with their text, terms and vectors; bump their knowledge
        bases' revisions (``knowledge.ann``, ``knowledge.lexical``) and take them out of their
        BM25 statistics, in the caller's transaction."""
        for kb, n in conn.execute(revisions.COUNT.format(where=where), args).fetchall():
            conn.execute(revisions.BUMP, {"kb": kb, "n": -int(n)})
        # ``where`` names knowledge_chunks' columns, which knowledge_fts_terms does not have
        for kb, n, length in conn.execute(fts_stats.CHOSEN.format(where=where), args).fetchall():
            conn.execute(fts_stats.ADD, {"kb": kb, "n": -int(n), "len": -int(length)})
        ids = [r[0] for r in conn.execute(f"SELECT id FROM knowledge_chunks WHERE {where}", args)]
        tables = self._all_vec_tables(conn)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            conn.execute(f"DELETE FROM knowledge_fts WHERE rowid IN ({marks})", part)
            conn.execute(f"DELETE FROM knowledge_fts_terms WHERE chunk_id IN ({marks})", part)
            for table in tables:
                conn.execute(f"DELETE FROM {table} WHERE chunk_id IN ({marks})", part)
            conn.execute(f"DELETE FROM knowledge_chunks WHERE id IN ({marks})", part)

    async def delete_document(self, workspace_id: str, document_id: str) -> bool:
        def delete(conn: Any) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "DELETE FROM knowledge_documents WHERE id = ? AND workspace_id = ?",
                    (document_id, workspace_id),
                )
                if cur.rowcount == 0:
                    conn.execute("ROLLBACK")
                    return False
                self._delete_chunks(
                    conn, "document_id = ? AND workspace_id = ?", (document_id, workspace_id)
                )
                conn.execute("COMMIT")
                return True
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        return await self._run(delete)

    async def delete_knowledge_base(self, workspace_id: str, knowledge_base_id: str) -> bool:
        def delete(conn: Any) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._delete_chunks(
                    conn,
                    "knowledge_base_id = ? AND workspace_id = ?",
                    (knowledge_base_id, workspace_id),
                )
                conn.execute(
                    "DELETE FROM knowledge_documents WHERE knowledge_base_id = ? "
                    "AND workspace_id = ?",
                    (knowledge_base_id, workspace_id),
                )
                cur = conn.execute(
                    "DELETE FROM knowledge_bases WHERE id = ? AND workspace_id = ?",
                    (knowledge_base_id, workspace_id),
                )
                gone = bool(cur.rowcount)
                if gone:
                    conn.execute(
                        "DELETE FROM knowledge_fts_stats WHERE knowledge_base_id = ?",
                        (knowledge_base_id,),
                    )
                conn.execute("COMMIT" if gone else "ROLLBACK")
                return gone
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        return await self._run(delete)

    # --- reads -------------------------------------------------------------------------------

    async def dense(
        self,
        workspace_id: str,
        knowledge_base_id: str,
        vector: bytes,
        dimensions: int,
        k: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        if dimensions not in self._vec_tables:  # created by the writer, once
            await self._run(lambda conn: self._vec_table(conn, dimensions))
        table = f"knowledge_vec_{int(dimensions)}"
        if documents is not None and not documents:
            return []
        if documents is None and self._ann is not None:
            hits = await self._ann.search(
                self._source, workspace_id, knowledge_base_id, vector, dimensions, k
            )
            if hits is not None:
                return hits

        def search(conn: Any) -> list[tuple[int, float]]:
            if documents is None:
                rows = conn.execute(
                    f"SELECT v.chunk_id, v.distance FROM {table} v "
                    "JOIN knowledge_chunks c ON c.id = v.chunk_id "
                    "WHERE v.embedding MATCH ? AND v.k = ? AND v.knowledge_base_id = ? "
                    "AND c.workspace_id = ? ORDER BY v.distance",
                    (vector, int(k), knowledge_base_id, workspace_id),
                ).fetchall()
            else:  # the named documents' chunks only: an exact scan of their vectors
                marks = ",".join("?" * len(documents))
                rows = conn.execute(
                    "SELECT c.id, vec_distance_cosine(v.embedding, ?) AS d "
                    f"FROM knowledge_chunks c JOIN {table} v ON v.chunk_id = c.id "
                    "WHERE c.workspace_id = ? AND c.knowledge_base_id = ? "
                    f"AND c.document_id IN ({marks}) ORDER BY d, c.id LIMIT ?",
                    (vector, workspace_id, knowledge_base_id, *documents, int(k)),
                ).fetchall()
            return [(int(r[0]), float(r[1])) for r in rows]

        return await self._read(search)

    async def lexical(
        self,
        workspace_id: str,
        knowledge_base_id: str,
        query: str,
        k: int,
        documents: Sequence[str] | None = None,
    ) -> list[tuple[int, float]]:
        tokens = query_tokens(query)
        if not tokens or (documents is not None and not documents):
            return []
        stems = fts_tokens.stem(tokens)  # at most MAX_QUERY_TERMS: microseconds
        if self._lexical is not None:
            hits = await self._lexical.search(
                self._terms, workspace_id, knowledge_base_id, stems, k, documents
            )
            if hits is not None:
                return hits
        # FTS5 finds the candidates: the knowledge base is a term of the MATCH, so FTS5 itself
        # keeps to its rows (no join per matching row); they are scored from the knowledge
        # base's own statistics (``knowledge.fts_stats``); the workspace is checked on the
        # top ``k`` alone
        terms = " OR ".join(f'"{t}"' for t in tokens)
        match = f'kb : "{kb_token(knowledge_base_id)}" AND text : ({terms})'

        def search(conn: Any) -> list[tuple[int, float]]:
            stats = conn.execute(fts_stats.STATS, (knowledge_base_id,)).fetchone()
            if stats is None:
                return []
            rows = conn.execute(fts_stats.CANDIDATES, (match,)).fetchall()
            keep = None
            if documents is not None:
                marks = ",".join("?" * len(documents))
                keep = {
                    int(r[0])
                    for r in conn.execute(
                        "SELECT id FROM knowledge_chunks WHERE knowledge_base_id = ? "
                        f"AND workspace_id = ? AND document_id IN ({marks})",
                        (knowledge_base_id, workspace_id, *documents),
                    )
                }
            hits = fts_stats.rank(rows, stems, int(stats[0]), int(stats[1]), int(k), keep)
            mine = self._scoped(conn, workspace_id, knowledge_base_id, [h[0] for h in hits])
            return [h for h in hits if h[0] in mine]

        return await self._read(search)

    @staticmethod
    def _scoped(conn: Any, workspace_id: str, knowledge_base_id: str, ids: list[int]) -> set[int]:
        """Those of ``ids`` that are chunks of the workspace's knowledge base."""
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT id FROM knowledge_chunks WHERE id IN ({marks}) AND workspace_id = ? "
            "AND knowledge_base_id = ?",
            (*ids, workspace_id, knowledge_base_id),
        )
        return {int(r[0]) for r in rows}

    async def chunks(self, workspace_id: str, ids: Sequence[int]) -> dict[int, StoredChunk]:
        wanted = [int(i) for i in ids]
        if not wanted:
            return {}

        def read(conn: Any) -> dict[int, StoredChunk]:
            marks = ",".join("?" * len(wanted))
            rows = conn.execute(
                "SELECT id, document_id, knowledge_base_id, ordinal, heading, text, tokens "
                f"FROM knowledge_chunks WHERE workspace_id = ? AND id IN ({marks})",
                (workspace_id, *wanted),
            ).fetchall()
            return {
                int(r[0]): StoredChunk(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows
            }

        return await self._read(read)

    async def aclose(self) -> None:
        def close(conn: Any) -> None:
            conn.close()

        if self._ann is not None:
            await self._ann.aclose()
        if self._lexical is not None:
            await self._lexical.aclose()

        if self._conn is not None:
            await self._run(close)
            self._conn = None
        self._executor.shutdown(wait=True)
        self._readers.shutdown(wait=True)  # no read runs now: close their connections
        with self._read_lock:
            for reader in self._read_conns:
                reader.close()
            self._read_conns.clear()


def _chunk_rows(
    conn: Any, query: str, knowledge_base_id: str, workspace_id: str, ids: Sequence[int] | None
) -> list[Any]:
    """``query`` (its ``?``s: the knowledge base, the workspace; chunks aliased ``c``) over
    every chunk, or over ``ids`` only, 500 ids a statement (SQLite's bound-parameter cap)."""
    if ids is None:
        return list(conn.execute(query, (knowledge_base_id, workspace_id)).fetchall())
    rows: list[Any] = []
    for i in range(0, len(ids), 500):
        part = [int(x) for x in ids[i : i + 500]]
        marks = ",".join("?" * len(part))
        rows += conn.execute(
            f"{query} AND c.id IN ({marks})", (knowledge_base_id, workspace_id, *part)
        ).fetchall()
    return rows


class _Vectors:
    """The ``knowledge.ann.VectorSource`` of a ``SqliteIndex`` (its reader connections)."""

    def __init__(self, index: SqliteIndex) -> None:
        self._index = index

    async def state(self, knowledge_base_id: str) -> tuple[int, int] | None:
        def read(conn: Any) -> tuple[int, int] | None:
            row = conn.execute(revisions.STATE, {"kb": knowledge_base_id}).fetchone()
            return (int(row[0]), int(row[1])) if row else None

        return await self._index._read(read)

    async def ids(
        self, workspace_id: str, knowledge_base_id: str, dims: int
    ) -> list[tuple[int, str]]:
        def read(conn: Any) -> list[tuple[int, str]]:
            rows = conn.execute(
                f"SELECT c.id, c.document_id FROM knowledge_chunks c "
                f"JOIN knowledge_vec_{int(dims)} v ON v.chunk_id = c.id "
                "WHERE c.knowledge_base_id = ? AND c.workspace_id = ?",
                (knowledge_base_id, workspace_id),
            )
            return [(int(r[0]), str(r[1])) for r in rows]

        return await self._index._read(read)

    async def vectors(
        self, workspace_id: str, knowledge_base_id: str, dims: int, ids: Sequence[int] | None
    ) -> tuple[list[tuple[int, str]], bytes]:
        query = (
            f"SELECT c.id, c.document_id, v.embedding FROM knowledge_chunks c "
            f"JOIN knowledge_vec_{int(dims)} v ON v.chunk_id = c.id "
            "WHERE c.knowledge_base_id = ? AND c.workspace_id = ?"
        )

        def read(conn: Any) -> tuple[list[tuple[int, str]], bytes]:
            rows = _chunk_rows(conn, query, knowledge_base_id, workspace_id, ids)
            return [(int(r[0]), str(r[1])) for r in rows], b"".join(r[2] for r in rows)

        return await self._index._read(read)


class _Terms:
    """The ``knowledge.lexical.TermSource`` of a ``SqliteIndex`` (its reader connections)."""

    def __init__(self, index: SqliteIndex) -> None:
        self._index = index
        self.state = _Vectors(index).state

    async def ids(self, workspace_id: str, knowledge_base_id: str) -> list[tuple[int, str]]:
        def read(conn: Any) -> list[tuple[int, str]]:
            rows = conn.execute(
                "SELECT id, document_id FROM knowledge_chunks "
                "WHERE knowledge_base_id = ? AND workspace_id = ?",
                (knowledge_base_id, workspace_id),
            )
            return [(int(r[0]), str(r[1])) for r in rows]

        return await self._index._read(read)

    async def terms(
        self, workspace_id: str, knowledge_base_id: str, ids: Sequence[int] | None
    ) -> list[tuple[int, str, int, str]]:
        query = (
            "SELECT c.id, c.document_id, t.length, t.terms FROM knowledge_chunks c "
            "JOIN knowledge_fts_terms t ON t.chunk_id = c.id "
            "WHERE c.knowledge_base_id = ? AND c.workspace_id = ?"
        )

        def read(conn: Any) -> list[tuple[int, str, int, str]]:
            rows = _chunk_rows(conn, query, knowledge_base_id, workspace_id, ids)
            return [(int(r[0]), str(r[1]), int(r[2]), str(r[3])) for r in rows]

        return await self._index._read(read)


__all__ = [
    "STOP_WORDS",
    "SqliteIndex",
    "fts_query",
    "kb_token",
    "query_tokens",
    "sqlite_path",
]
