"""apps.tools, apps.tool_choice, apps.max_tool_rounds: the plugins an app's model may call
(none for every existing app)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("apps", sa.Column("tools", sa.JSON(), nullable=True))
    op.add_column(
        "apps",
        sa.Column("tool_choice", sa.String(length=16), server_default="auto", nullable=False),
    )
    op.add_column(
        "apps", sa.Column("max_tool_rounds", sa.Integer(), server_default="4", nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("max_tool_rounds")
        batch.drop_column("tool_choice")
        batch.drop_column("tools")
