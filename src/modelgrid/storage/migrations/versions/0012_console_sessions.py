"""console_sessions (the web console's sign-ins) and audit_log.workspace_id (a workspace's
audit entries, newest first), filled in for the entries already there

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _workspace_of(target: str, details: Any) -> str | None:
    """As ``tenancy.audit.workspace_of``: the details' ``workspace_id``, else the target's id
    when the target is a workspace."""
    if isinstance(details, str):
        details = json.loads(details)
    if isinstance(details, dict) and isinstance(details.get("workspace_id"), str):
        return str(details["workspace_id"])[:40]
    kind, _, ident = target.partition(":")
    return ident[:40] if kind == "workspace" and ident else None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_console_sessions_api_key_id_api_keys"),
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index(op.f("ix_console_sessions_api_key_id"), "console_sessions", ["api_key_id"])
    op.create_index(op.f("ix_console_sessions_expires_at"), "console_sessions", ["expires_at"])
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("workspace_id", sa.String(40), nullable=True))
    op.create_index("ix_audit_log_workspace_id_id", "audit_log", ["workspace_id", "id"])
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, target, details FROM audit_log")).all()
    for entry_id, target, details in rows:
        ws = _workspace_of(target, details)
        if ws is not None:
            conn.execute(
                sa.text("UPDATE audit_log SET workspace_id = :ws WHERE id = :id"),
                {"ws": ws, "id": entry_id},
            )


def downgrade() -> None:
    op.drop_index("ix_audit_log_workspace_id_id", table_name="audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("workspace_id")
    op.drop_index(op.f("ix_console_sessions_expires_at"), table_name="console_sessions")
    op.drop_index(op.f("ix_console_sessions_api_key_id"), table_name="console_sessions")
    op.drop_table("console_sessions")
