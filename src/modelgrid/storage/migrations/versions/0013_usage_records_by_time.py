"""usage_records: (workspace_id, created_at) and (api_key_id, created_at) indexes in place of
the single-column workspace_id and api_key_id ones (their prefixes), so a workspace's or a
key's newest requests (the console's request log) are read in index order, not sorted

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_usage_records_workspace_time", "usage_records", ["workspace_id", "created_at"]
    )
    op.create_index("ix_usage_records_key_time", "usage_records", ["api_key_id", "created_at"])
    op.drop_index("ix_usage_records_workspace_id", table_name="usage_records")
    op.drop_index("ix_usage_records_api_key_id", table_name="usage_records")


def downgrade() -> None:
    op.create_index("ix_usage_records_api_key_id", "usage_records", ["api_key_id"])
    op.create_index("ix_usage_records_workspace_id", "usage_records", ["workspace_id"])
    op.drop_index("ix_usage_records_key_time", table_name="usage_records")
    op.drop_index("ix_usage_records_workspace_time", table_name="usage_records")
