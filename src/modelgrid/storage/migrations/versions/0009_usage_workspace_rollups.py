"""usage_workspace_rollups: the usage roll-ups without the key, backfilled from usage_rollups

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelgrid.storage.models import ROLLUP_MEASURES

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DIMENSIONS = (
    "granularity",
    "bucket_start",
    "workspace_id",
    "model",
    "region",
    "currency",
    "batch",
    "status_class",
)


def upgrade() -> None:
    op.create_table(
        "usage_workspace_rollups",
        sa.Column("granularity", sa.String(6), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("batch", sa.SmallInteger(), nullable=False),
        sa.Column("status_class", sa.SmallInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in ROLLUP_MEASURES),
        sa.PrimaryKeyConstraint(*DIMENSIONS, name=op.f("pk_usage_workspace_rollups")),
        sqlite_with_rowid=False,  # stored in primary-key order: a time range is one scan
    )
    op.create_index(
        "ix_usage_workspace_rollups_workspace",
        "usage_workspace_rollups",
        ["workspace_id", "granularity", "bucket_start"],
    )
    dims = ", ".join(DIMENSIONS)
    sums = ", ".join(f"SUM({m})" for m in ROLLUP_MEASURES)
    cols = ", ".join((*DIMENSIONS, *ROLLUP_MEASURES))
    op.execute(  # the roll-ups so far, their keys added together
        f"INSERT INTO usage_workspace_rollups ({cols}) "
        f"SELECT {dims}, {sums} FROM usage_rollups GROUP BY {dims}"
    )


def downgrade() -> None:
    op.drop_table("usage_workspace_rollups")
