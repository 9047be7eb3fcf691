"""batches: files, batches, batch_results; batch columns on usage_records and prices

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _at(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("path", sa.String(1024), nullable=False),
        _at("created_at", nullable=False),
        _at("expires_at"),
        _at("deleted_at"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_files_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
    )
    op.create_index(op.f("ix_files_workspace_id"), "files", ["workspace_id"])
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("input_file_id", sa.String(40), nullable=False),
        sa.Column("output_file_id", sa.String(40), nullable=True),
        sa.Column("error_file_id", sa.String(40), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("completion_window", sa.String(8), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        _at("created_at", nullable=False),
        _at("expires_at", nullable=False),
        _at("in_progress_at"),
        _at("finalizing_at"),
        _at("completed_at"),
        _at("failed_at"),
        _at("expired_at"),
        _at("cancelling_at"),
        _at("cancelled_at"),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        _at("lease_until"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_batches_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index(op.f("ix_batches_workspace_id"), "batches", ["workspace_id"])
    op.create_index(op.f("ix_batches_status"), "batches", ["status"])
    op.create_table(
        "batch_results",
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("custom_id", sa.String(512), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_batch_results_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("batch_id", "line", name=op.f("pk_batch_results")),
    )
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("custom_id", sa.String(512), nullable=True))
        batch.create_index(op.f("ix_usage_records_batch_id"), ["batch_id"])
    with op.batch_alter_table("prices") as batch:
        batch.add_column(
            sa.Column("batch_percent", sa.Integer(), server_default="50", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("prices") as batch:
        batch.drop_column("batch_percent")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_index(op.f("ix_usage_records_batch_id"))
        batch.drop_column("custom_id")
        batch.drop_column("batch_id")
    op.drop_table("batch_results")
    op.drop_index(op.f("ix_batches_status"), "batches")
    op.drop_index(op.f("ix_batches_workspace_id"), "batches")
    op.drop_table("batches")
    op.drop_index(op.f("ix_files_workspace_id"), "files")
    op.drop_table("files")
