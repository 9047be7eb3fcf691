"""app_memories: end users' long-term memory facts (DashScope's memory_id), per workspace

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_memories",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("memory_id", sa.String(64), nullable=False),
        sa.Column("fact", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_app_memories_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_memories")),
    )
    op.create_index(
        "ix_app_memories_workspace_id_memory_id", "app_memories", ["workspace_id", "memory_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_app_memories_workspace_id_memory_id", table_name="app_memories")
    op.drop_table("app_memories")
