"""allowed_jurisdictions on workspaces and api_keys (residency by country or bloc)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("workspaces", "api_keys"):
        op.add_column(table, sa.Column("allowed_jurisdictions", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ("workspaces", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("allowed_jurisdictions")
