"""apps.rerank: an app's retrieved chunks re-ranked by its model before the prompt (opt-in,
off for every existing app)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "apps", sa.Column("rerank", sa.Boolean(), server_default=sa.false(), nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("rerank")
