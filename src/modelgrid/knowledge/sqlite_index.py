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

- ``knowledge_fts``: FTS5 (a copy of each chunk's heading and text; ``contentless_delete``
  needs SQLite 3.43), Porter-stemmed ``unicode61`` tokens; row id = chunk id; ranked by
  FTS5's ``bm25()`` (Robertson's BM25, k1 = 1.2, b = 0.75).
- ``knowledge_vec_<dims>``: a ``vec0`` table per embedding dimension, cosine distance, the
  knowledge base as its partition key (a query scans only that knowledge base's vectors,
  exactly: no approximate index, so recall is the model's).

Every read is filtered by knowledge base and joined to ``knowledge_chunks`` on the workspace,
so no query returns another workspace's chunk.
"""

from __future__ import annotations

import asyncio
import ctypes
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
from modelgrid.knowledge.chunking import Chunk
from modelgrid.knowledge.index import StoredChunk

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


def fts_query(text: str) -> str | None:
    """A user's text as an FTS5 query: each word a quoted term, OR-ed (BM25 ranks them),
    ``STOP_WORDS`` left out unless nothing else is left; ``None`` when it has no word."""
    words = list(dict.fromkeys(t.lower() for t in _TERM.findall(text)))
    terms = [w for w in words if w not in STOP_WORDS] or words
    terms = terms[:MAX_QUERY_TERMS]
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


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
    conn.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS knowledge_fts USING fts5("
        "text, tokenize='porter unicode61')"
    )
    return conn


class SqliteIndex:
    """See the module docstring.

    Args:
        path: The SQLite database file (migrated: ``knowledge_chunks`` exists).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
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
                        "INSERT INTO knowledge_fts (rowid, text) VALUES (?, ?)", (cid, searchable)
                    )
                    conn.execute(
                        f"INSERT INTO {table} (chunk_id, knowledge_base_id, embedding) "
                        "VALUES (?, ?, ?)",
                        (cid, knowledge_base_id, vector),
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
        ids = [r[0] for r in conn.execute(f"SELECT id FROM knowledge_chunks WHERE {where}", args)]
        tables = self._all_vec_tables(conn)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            conn.execute(f"DELETE FROM knowledge_fts WHERE rowid IN ({marks})", part)
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
        match = fts_query(query)
        if match is None or (documents is not None and not documents):
            return []
        marks = ",".join("?" * len(documents or ()))
        only = f"AND c.document_id IN ({marks}) " if documents is not None else ""

        def search(conn: Any) -> list[tuple[int, float]]:
            rows = conn.execute(
                "SELECT f.rowid, bm25(knowledge_fts) AS score FROM knowledge_fts f "
                "JOIN knowledge_chunks c ON c.id = f.rowid "
                "WHERE knowledge_fts MATCH ? AND c.knowledge_base_id = ? "
                f"AND c.workspace_id = ? {only}ORDER BY score LIMIT ?",
                (match, knowledge_base_id, workspace_id, *(documents or ()), int(k)),
            ).fetchall()
            return [(int(r[0]), -float(r[1])) for r in rows]  # FTS5's bm25() is negated

        return await self._read(search)

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

        if self._conn is not None:
            await self._run(close)
            self._conn = None
        self._executor.shutdown(wait=True)
        self._readers.shutdown(wait=True)  # no read runs now: close their connections
        with self._read_lock:
            for reader in self._read_conns:
                reader.close()
            self._read_conns.clear()


__all__ = ["STOP_WORDS", "SqliteIndex", "fts_query", "sqlite_path"]
