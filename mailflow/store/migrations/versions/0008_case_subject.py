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


# Plain ADD and DROP COLUMN, which SQLite has: a batch operation would copy
# the table, and SQLite refuses to drop cases that other rows refer to.


def upgrade() -> None:
    # Empty for cases opened before: their next email fixes it.
    op.add_column("cases", sa.Column("subject", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("cases", "subject")
