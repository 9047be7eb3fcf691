"""apps.query_rewrite and apps.memory_extraction (model-based query rewriting and memory
extraction, opt-in); an index on app_sessions.updated_at for the session expiry sweep

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "apps",
        sa.Column("query_rewrite", sa.String(16), server_default="concat", nullable=False),
    )
    op.add_column(
        "apps",
        sa.Column("memory_extraction", sa.String(16), server_default="rules", nullable=False),
    )
    op.create_index(op.f("ix_app_sessions_updated_at"), "app_sessions", ["updated_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_app_sessions_updated_at"), table_name="app_sessions")
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("memory_extraction")
        batch.drop_column("query_rewrite")
