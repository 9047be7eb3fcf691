"""Dense search inside PostgreSQL with pgvector: the SQL and settings ``PgIndex`` uses where the
``vector`` extension is in the database.

**Storage.** ``knowledge_pg_vectors`` keeps each chunk's float32 ``bytea`` (the store's
extension-free truth, which the in-process index of ``knowledge.ann`` also reads) and gains a
``vec vector`` column beside it, filled in the same ``INSERT`` (a text literal cast to
``vector``: asyncpg has no codec for the type) and backfilled from the ``bytea`` when the
column is added to a table that already holds rows (and at each process's first use, rows a
process from before the column wrote meanwhile: a partial index finds them). It costs ``4 * dims + 8`` bytes a chunk
more (384 dims: ~1.5 kB).

**Search** (pgvector 0.8.0's README, "Querying", "Filtering", "Iterative Index Scans"), where
the process's IVF index (``knowledge.ann``) does not answer — it still comes first for a
large knowledge base: on the bench's 100k set it answers in 2.2 ms at recall@50 0.999 against
HNSW's 6.4 ms at 0.85 (near-duplicate filler vectors, where a graph walk misses; at 10k HNSW
reached 0.99): so HNSW serves while the IVF index builds or refreshes, past its memory cap and
for large documents filters, and the numpy scan of every vector (2.3 s at 100k) is gone:

- a knowledge base under ``hnsw_min_chunks`` chunks (100,000): an exact scan in the server,
  ``vec <=> query`` (cosine distance, ``1 - cos``) over the knowledge base's rows (found by the
  ``(knowledge_base_id, dims)`` B-tree), ordered by distance then chunk id — only ``k`` rows
  cross the wire;
- a larger one: an HNSW index per embedding width, an expression index over the rows of that
  width (``(vec::vector(D)) vector_cosine_ops ... WHERE dims = D``: one column holds every
  model's vectors), searched with ``hnsw.iterative_scan = relaxed_order`` so that the
  workspace, knowledge base and documents filters applied after the index still fill ``k``
  rows: the scan goes on past ``ef_search`` candidates until ``k`` pass or
  ``hnsw.max_scan_tuples`` were visited. Fewer than ``k`` rows (a filter that keeps too few of
  the width's rows) falls back to the exact scan; a documents filter keeping fewer than
  ``hnsw_min_chunks`` chunks (counted first) goes to it straight away. Widths above ``MAX_HNSW_DIMS`` (pgvector's
  limit for ``vector`` in an index) stay exact.

Distances are pgvector's ``cosine_distance`` (float sums, the quotient in double, clamped to
``[-1, 1]``): equal to ``pg_index._cosine_top``'s to about 1e-6. A zero vector's distance,
``NaN`` in pgvector, is 1.0 as there (its cosine taken as 0).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HNSW_DIMS = 2000  # pgvector: "vector" columns of up to 2,000 dimensions can be indexed


@dataclass(frozen=True, slots=True)
class PgVectorSettings:
    """Args:
    hnsw_min_chunks: Knowledge bases with fewer chunks are scanned exactly in the server.
    ef_search: HNSW candidate list of a query (``hnsw.ef_search``); at least ``k`` is used.
    max_scan_tuples: Most index tuples an iterative scan visits (``hnsw.max_scan_tuples``).
    m: HNSW links per node (``WITH (m = ...)``, when an index is created).
    ef_construction: HNSW build candidate list (``WITH (ef_construction = ...)``).
    """

    hnsw_min_chunks: int = 100_000
    ef_search: int = 400
    max_scan_tuples: int = 20_000
    m: int = 16
    ef_construction: int = 64


# ``vec`` kept in the row (MAIN), the ``bytea`` moved out of it (EXTERNAL: TOAST, uncompressed):
# a row holding both (2 x 4 x dims bytes) passes TOAST's 2 kB threshold from ~256 dims, and
# left to itself TOAST moves the larger, ``vec``, out — four more buffers a row for every
# distance the exact scan computes (3,000 rows of 384 dims: 18,600 buffers, 11 ms)
ADD_COLUMN = (
    "ALTER TABLE knowledge_pg_vectors ADD COLUMN IF NOT EXISTS vec vector",
    "ALTER TABLE knowledge_pg_vectors ALTER COLUMN vec SET STORAGE MAIN",
    "ALTER TABLE knowledge_pg_vectors ALTER COLUMN embedding SET STORAGE EXTERNAL",
    # rows without a ``vec`` (written by a process from before it): found without a scan
    "CREATE INDEX IF NOT EXISTS ix_knowledge_pg_vectors_unfilled ON knowledge_pg_vectors "
    "(chunk_id) WHERE vec IS NULL",
)
HAS_COLUMN = (
    "SELECT 1 FROM information_schema.columns WHERE table_name = 'knowledge_pg_vectors' "
    "AND column_name = 'vec' AND table_schema = current_schema()"
)
BACKFILL_READ = (
    "SELECT chunk_id, embedding FROM knowledge_pg_vectors WHERE vec IS NULL "
    "ORDER BY chunk_id LIMIT 2000"
)
BACKFILL_WRITE = (
    "UPDATE knowledge_pg_vectors SET vec = CAST(CAST(:v AS text) AS vector) WHERE chunk_id = :c"
)
# The workspace: the knowledge base is its (one check a query, not a join per row: a chunk is
# written with its knowledge base's workspace); a documents filter, the chunks' own workspace.
_MINE = "AND EXISTS (SELECT 1 FROM knowledge_bases b WHERE b.id = :kb AND b.workspace_id = :ws) "
ONLY_DOCUMENTS = (
    "AND v.chunk_id IN (SELECT c.id FROM knowledge_chunks c WHERE c.workspace_id = :ws "
    "AND c.knowledge_base_id = :kb AND c.document_id IN :docs) "
)
# The query vector parsed once (an InitPlan): asyncpg's statements are prepared, and from the
# sixth run PostgreSQL may keep a generic plan, where a cast of the parameter is not folded
# but evaluated per row (2,000 rows of 384 dims: 54 ms instead of 2.5)
_QUERY = "(SELECT CAST(CAST(:q AS text) AS vector{typmod}))"
# how many chunks a documents filter keeps (the choice between HNSW and the exact scan)
COUNT_DOCUMENTS = (
    "SELECT count(*) FROM knowledge_chunks WHERE workspace_id = :ws "
    "AND knowledge_base_id = :kb AND document_id IN :docs"
)
# ``cosine_distance`` is NaN for a zero vector: 1.0, as the numpy scan's cosine of 0
_EXACT = (
    "SELECT v.chunk_id, coalesce(nullif(v.vec <=> "
    + _QUERY.format(typmod="")
    + ", 'NaN'::float8), 1.0) AS d FROM knowledge_pg_vectors v "
    "WHERE v.knowledge_base_id = :kb AND v.dims = :dims " + _MINE + "{only}"
    "ORDER BY d, v.chunk_id LIMIT :k"
)
# the ``dims`` literal lets the planner match the partial index's predicate
_HNSW = (
    "WITH hits AS MATERIALIZED (SELECT v.chunk_id, "
    "v.vec::vector({dims}) <=> " + _QUERY.format(typmod="({dims})") + " AS d "
    "FROM knowledge_pg_vectors v WHERE v.dims = {dims} AND v.knowledge_base_id = :kb "
    + _MINE
    + "{only}ORDER BY d LIMIT :k) SELECT chunk_id, d FROM hits"
)
# for the HNSW query's transaction; ``enable_sort`` off: the planner orders by the index
# rather than reading the knowledge base through its B-tree and sorting every distance (its
# choice on a small or unanalysed table), as the threshold already chose the index
SCAN_SETTINGS = (
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
    "set_config('hnsw.ef_search', :ef, true), set_config('hnsw.max_scan_tuples', :mst, true), "
    "set_config('enable_sort', 'off', true)"
)


def literal(vector: bytes) -> str:
    """A float32 vector's bytes as pgvector's text form ``[x,y,...]`` (each value exact: a
    float32 widened to float64 and printed shortest reads back as the same float32)."""
    import numpy as np  # the ``knowledge`` extra, imported where used

    values = np.frombuffer(vector, dtype=np.float32).tolist()
    return "[" + ",".join(repr(x) for x in values) + "]"


def exact_sql(documents: bool) -> str:
    """The exact scan (rows: chunk id, distance; nearest first, ties by id); ``documents``:
    only the chunks of ``:docs`` (an expanding parameter)."""
    return _EXACT.format(only=ONLY_DOCUMENTS if documents else "")


def hnsw_sql(dims: int, documents: bool) -> str:
    """The HNSW search of ``dims``-wide vectors (rows: chunk id, distance; unordered)."""
    return _HNSW.format(dims=int(dims), only=ONLY_DOCUMENTS if documents else "")


def index_name(dims: int) -> str:
    return f"ix_knowledge_pg_vectors_hnsw_{int(dims)}"


def create_index_sql(dims: int, settings: PgVectorSettings) -> str:
    """The HNSW index of ``dims``-wide vectors (``IF NOT EXISTS``)."""
    d = int(dims)
    return (
        f"CREATE INDEX IF NOT EXISTS {index_name(d)} ON knowledge_pg_vectors USING hnsw "
        f"((vec::vector({d})) vector_cosine_ops) WITH (m = {int(settings.m)}, "
        f"ef_construction = {int(settings.ef_construction)}) WHERE dims = {d}"
    )


__all__ = [
    "ADD_COLUMN",
    "BACKFILL_READ",
    "BACKFILL_WRITE",
    "COUNT_DOCUMENTS",
    "HAS_COLUMN",
    "MAX_HNSW_DIMS",
    "ONLY_DOCUMENTS",
    "SCAN_SETTINGS",
    "PgVectorSettings",
    "create_index_sql",
    "exact_sql",
    "hnsw_sql",
    "index_name",
    "literal",
]
