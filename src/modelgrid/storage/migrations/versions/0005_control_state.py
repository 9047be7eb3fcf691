"""control_state: the change counters every gateway follows, and the shared topology document

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "control_state",
        sa.Column("topic", sa.String(32), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("topic", name=op.f("pk_control_state")),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        table,
        [
            {"topic": t, "version": 0, "document": None, "changed_at": now}
            for t in ("principals", "prices", "topology")
        ],
    )


def downgrade() -> None:
    op.drop_table("control_state")
