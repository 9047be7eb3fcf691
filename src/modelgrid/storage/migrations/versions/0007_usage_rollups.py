"""usage_rollups: the usage ledger summed per minute, hour and day, backfilled from it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelgrid.storage.models import ROLLUP_MEASURES
from modelgrid.storage.rollups import rebuild_statements

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_rollups",
        sa.Column("granularity", sa.String(6), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("batch", sa.SmallInteger(), nullable=False),
        sa.Column("status_class", sa.SmallInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in ROLLUP_MEASURES),
        sa.PrimaryKeyConstraint(
            "granularity",
            "bucket_start",
            "workspace_id",
            "api_key_id",
            "model",
            "region",
            "currency",
            "batch",
            "status_class",
            name=op.f("pk_usage_rollups"),
        ),
        sqlite_with_rowid=False,  # stored in primary-key order: a time range is one scan
    )
    op.create_index(
        "ix_usage_rollups_workspace",
        "usage_rollups",
        ["workspace_id", "granularity", "bucket_start"],
    )
    op.create_index(
        "ix_usage_rollups_api_key", "usage_rollups", ["api_key_id", "granularity", "bucket_start"]
    )
    bind = op.get_bind()
    for sql in rebuild_statements(bind.dialect.name):  # the ledger so far
        bind.execute(sa.text(sql))


def downgrade() -> None:
    op.drop_table("usage_rollups")
