"""Each knowledge base's index revision: the freshness check of ``knowledge.ann``'s graphs.

``knowledge_index_revisions`` (created by the index on first use, as its other tables: one
row per knowledge base, named parameters that SQLite's ``sqlite3`` and SQLAlchemy's ``text``
both bind) holds a ``revision`` bumped by every write and delete of the knowledge base's
chunks, in the same transaction, and the knowledge base's current ``chunks``. A search reads
the row by its primary key: a graph built at another revision is stale. A database from before
the table gets a row per knowledge base at revision 0 with its chunk count (``BACKFILL``), in
the transaction that creates the table.
"""

from __future__ import annotations

CREATE = (
    "CREATE TABLE IF NOT EXISTS knowledge_index_revisions ("
    "knowledge_base_id VARCHAR(40) PRIMARY KEY, revision BIGINT NOT NULL, "
    "chunks BIGINT NOT NULL)"
)
BACKFILL = (
    "INSERT INTO knowledge_index_revisions (knowledge_base_id, revision, chunks) "
    "SELECT knowledge_base_id, 0, count(*) FROM knowledge_chunks GROUP BY knowledge_base_id"
)
# ``:kb`` gained ``:n`` chunks (negative: lost); the count never goes below 0
BUMP = (
    "INSERT INTO knowledge_index_revisions (knowledge_base_id, revision, chunks) "
    "VALUES (:kb, 1, CASE WHEN CAST(:n AS BIGINT) > 0 THEN CAST(:n AS BIGINT) ELSE 0 END) "
    "ON CONFLICT (knowledge_base_id) DO UPDATE SET "
    "revision = knowledge_index_revisions.revision + 1, "
    "chunks = CASE WHEN knowledge_index_revisions.chunks + CAST(:n AS BIGINT) > 0 "
    "THEN knowledge_index_revisions.chunks + CAST(:n AS BIGINT) ELSE 0 END"
)
# the chunks a delete chooses, counted per knowledge base (``{where}``: on knowledge_chunks)
COUNT = (
    "SELECT knowledge_base_id, count(*) FROM knowledge_chunks WHERE {where} "
    "GROUP BY knowledge_base_id"
)
STATE = "SELECT revision, chunks FROM knowledge_index_revisions WHERE knowledge_base_id = :kb"

__all__ = ["BACKFILL", "BUMP", "COUNT", "CREATE", "STATE"]
