"""cases keep the subject of their emails for life

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty for cases opened before: their next email fixes it.
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("subject", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("subject")
