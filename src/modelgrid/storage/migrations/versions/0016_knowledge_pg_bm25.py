"""PostgreSQL knowledge index ranked by BM25: chunk lengths and per-knowledge-base statistics,
backfilled from the chunks already indexed

``knowledge_pg_text`` is made by ``knowledge.pg_index`` on first use, not by these migrations
(it is PostgreSQL-only, like SQLite's FTS5 and vec0 tables), and a fresh database's index is
made with the new columns and tables from the start. This revision upgrades one an earlier
version made: on PostgreSQL, where ``knowledge_pg_text`` exists, it adds ``length`` (each
chunk's lexeme occurrences), creates ``knowledge_pg_stats`` and ``knowledge_pg_terms`` and
fills them from the rows there, under a lock that holds off writers meanwhile. Elsewhere, or
with no such table, it does nothing.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_UPGRADE = (
    "LOCK TABLE knowledge_pg_text IN SHARE ROW EXCLUSIVE MODE",
    "ALTER TABLE knowledge_pg_text ADD COLUMN IF NOT EXISTS length integer",
    "UPDATE knowledge_pg_text SET length = (SELECT coalesce(sum(coalesce(array_length("
    "u.positions, 1), 1)), 0) FROM unnest(tsv) u) WHERE length IS NULL",
    "ALTER TABLE knowledge_pg_text ALTER COLUMN length SET NOT NULL",
    "CREATE TABLE IF NOT EXISTS knowledge_pg_stats ("
    " knowledge_base_id varchar(40) PRIMARY KEY, chunks bigint NOT NULL,"
    " length bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS knowledge_pg_terms ("
    " knowledge_base_id varchar(40) NOT NULL, lexeme text NOT NULL, chunks bigint NOT NULL,"
    " PRIMARY KEY (knowledge_base_id, lexeme))",
    "DELETE FROM knowledge_pg_stats",
    "DELETE FROM knowledge_pg_terms",
    "INSERT INTO knowledge_pg_stats (knowledge_base_id, chunks, length) "
    "SELECT knowledge_base_id, count(*), sum(length) FROM knowledge_pg_text "
    "GROUP BY knowledge_base_id",
    "INSERT INTO knowledge_pg_terms (knowledge_base_id, lexeme, chunks) "
    "SELECT t.knowledge_base_id, l.lexeme, count(*) FROM knowledge_pg_text t, "
    "unnest(tsvector_to_array(t.tsv)) AS l(lexeme) GROUP BY t.knowledge_base_id, l.lexeme",
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if bind.exec_driver_sql("SELECT to_regclass('knowledge_pg_text')").scalar() is None:
        return
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("DROP TABLE IF EXISTS knowledge_pg_terms")
    op.execute("DROP TABLE IF EXISTS knowledge_pg_stats")
    op.execute("ALTER TABLE IF EXISTS knowledge_pg_text DROP COLUMN IF EXISTS length")
