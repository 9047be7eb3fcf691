"""vector stores: OpenAI's vector stores as knowledge bases (kind, metadata, expiry), their
files' attributes and chunking, file batches

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("knowledge_bases") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="knowledge_base")
        )
        batch.add_column(sa.Column("metadata", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("expires_after_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("last_active_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("knowledge_documents") as batch:
        batch.add_column(sa.Column("file_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("attributes", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("batch_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("chunk_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("chunk_overlap", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("error_code", sa.String(32), nullable=True))
    op.create_index(op.f("ix_knowledge_documents_file_id"), "knowledge_documents", ["file_id"])
    op.create_index(op.f("ix_knowledge_documents_batch_id"), "knowledge_documents", ["batch_id"])
    op.create_table(
        "vector_store_file_batches",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("knowledge_base_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_vector_store_file_batches_workspace_id_workspaces"),
        ),
        sa.ForeignKeyConstraint(
            ["knowledge_base_id"],
            ["knowledge_bases.id"],
            name=op.f("fk_vector_store_file_batches_knowledge_base_id_knowledge_bases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vector_store_file_batches")),
    )
    op.create_index(
        op.f("ix_vector_store_file_batches_workspace_id"),
        "vector_store_file_batches",
        ["workspace_id"],
    )
    op.create_index(
        op.f("ix_vector_store_file_batches_knowledge_base_id"),
        "vector_store_file_batches",
        ["knowledge_base_id"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_vector_store_file_batches_knowledge_base_id"),
        table_name="vector_store_file_batches",
    )
    op.drop_index(
        op.f("ix_vector_store_file_batches_workspace_id"), table_name="vector_store_file_batches"
    )
    op.drop_table("vector_store_file_batches")
    op.drop_index(op.f("ix_knowledge_documents_batch_id"), table_name="knowledge_documents")
    op.drop_index(op.f("ix_knowledge_documents_file_id"), table_name="knowledge_documents")
    with op.batch_alter_table("knowledge_documents") as batch:
        for name in ("error_code", "chunk_overlap", "chunk_tokens", "batch_id", "attributes"):
            batch.drop_column(name)
        batch.drop_column("file_id")
    with op.batch_alter_table("knowledge_bases") as batch:
        for name in ("expired_at", "expires_at", "last_active_at", "expires_after_days"):
            batch.drop_column(name)
        batch.drop_column("metadata")
        batch.drop_column("kind")
