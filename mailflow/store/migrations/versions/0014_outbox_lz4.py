"""the outbox's bytes compressed by lz4 on PostgreSQL

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 18:40:00

PostgreSQL compresses a large value with pglz before it stores it. A
review email carries the document again as base64, which pglz cannot
shrink, so the server spent as much CPU on trying as a worker process
spent on the whole submission. lz4 gives up on such bytes at once, and
still shrinks a digest's text. The setting applies to values written from
now on; the stored ones stay as they are. A server built without lz4
stores the outbox's bytes uncompressed instead, as the documents are
already compressed or encoded. SQLite compresses nothing: nothing to do.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    if _has_lz4(connection):
        op.execute("ALTER TABLE outbox ALTER COLUMN raw SET COMPRESSION lz4")
    else:
        op.execute("ALTER TABLE outbox ALTER COLUMN raw SET STORAGE EXTERNAL")


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE outbox ALTER COLUMN raw SET STORAGE EXTENDED")
    if _has_lz4(connection):
        op.execute("ALTER TABLE outbox ALTER COLUMN raw SET COMPRESSION DEFAULT")


def _has_lz4(connection: sa.Connection) -> bool:
    """PostgreSQL 14 and later, built with lz4 (Debian's and most are)."""
    choices = connection.execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    return "lz4" in (choices or [])  # no such setting before PostgreSQL 14
