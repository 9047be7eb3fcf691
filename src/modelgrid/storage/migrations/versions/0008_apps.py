"""apps: assistants (DashScope's applications), their end users' sessions and turns

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("knowledge_base_ids", sa.JSON(), nullable=False),
        sa.Column("top_k", sa.Integer(), nullable=False),
        sa.Column("retrieval_mode", sa.String(16), nullable=False),
        sa.Column("max_tokens", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_apps_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apps")),
    )
    op.create_index(op.f("ix_apps_workspace_id"), "apps", ["workspace_id"])
    op.create_table(
        "app_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_app_sessions_app_id_apps")),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_app_sessions_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_sessions")),
    )
    op.create_index(op.f("ix_app_sessions_workspace_id"), "app_sessions", ["workspace_id"])
    op.create_index(op.f("ix_app_sessions_app_id"), "app_sessions", ["app_id"])
    op.create_table(
        "app_turns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("user_text", sa.Text(), nullable=False),
        sa.Column("assistant_text", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["app_sessions.id"],
            name=op.f("fk_app_turns_session_id_app_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_turns")),
    )
    op.create_index(op.f("ix_app_turns_session_id"), "app_turns", ["session_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_app_turns_session_id"), table_name="app_turns")
    op.drop_table("app_turns")
    op.drop_index(op.f("ix_app_sessions_app_id"), table_name="app_sessions")
    op.drop_index(op.f("ix_app_sessions_workspace_id"), table_name="app_sessions")
    op.drop_table("app_sessions")
    op.drop_index(op.f("ix_apps_workspace_id"), table_name="apps")
    op.drop_table("apps")
