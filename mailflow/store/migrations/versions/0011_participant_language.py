"""each participant's chosen language, from their Language: line

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


# Not in batch mode: on SQLite a batch copies the table, and SQLite refuses
# to drop participants that cases and tokens refer to (as in 0008).


def upgrade() -> None:
    # Empty: nobody chose yet; their economy's language or the site's applies.
    op.add_column(
        "participants",
        sa.Column("language", sa.String(length=16), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("participants", "language")
