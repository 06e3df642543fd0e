"""raw messages and documents as files named by their SHA-256

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 11:00:00

The bytes move out of the database into the ``[files] dir`` folder
(store/files.py); ``mailflow db upgrade`` hands that folder to this step.
Each file is on disk before the column that held it is dropped, in the
same transaction on PostgreSQL: a failed upgrade leaves the database as
it was, and at most files nothing refers to yet (swept after a day).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from mailflow.store.files import FileStore

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BATCH = 10  # rows read at once: a raw message may be 25 MB


def upgrade() -> None:
    # Columns are added and dropped in place (SQLite 3.35 and later): a
    # rebuilt table would be dropped under the rows that refer to it.
    op.add_column(
        "inbound_messages",
        sa.Column("raw_sha256", sa.String(length=64), nullable=False, server_default=""),
    )
    files = _files()
    connection = op.get_bind()
    for table, column, name_column in _BYTES:
        _convert(connection, table, column, name_column, lambda data: files().put(bytes(data)))
    if connection.dialect.name != "sqlite":  # SQLite keeps it: no rebuild
        op.alter_column("inbound_messages", "raw_sha256", server_default=None)
    op.drop_column("inbound_messages", "raw")
    op.drop_column("documents", "content")
    # The nightly sweep asks which names rows hold, 500 at a time.
    op.create_index("ix_inbound_messages_raw_sha256", "inbound_messages", ["raw_sha256"])
    op.create_index("ix_documents_sha256", "documents", ["sha256"])


def downgrade() -> None:
    """The bytes back into the database; the files stay (swept by no one)."""
    op.drop_index("ix_documents_sha256", "documents")
    op.drop_index("ix_inbound_messages_raw_sha256", "inbound_messages")
    op.add_column("inbound_messages", sa.Column("raw", sa.LargeBinary(), nullable=True))
    op.add_column("documents", sa.Column("content", sa.LargeBinary(), nullable=True))
    files = _files()
    connection = op.get_bind()
    for table, column, name_column in _BYTES:
        _convert(connection, table, name_column, column, lambda name: files().read(str(name)))
    op.drop_column("inbound_messages", "raw_sha256")


# (table, column that held the bytes, column that names their file)
_BYTES = (("inbound_messages", "raw", "raw_sha256"), ("documents", "content", "sha256"))


def _files() -> Callable[[], FileStore]:
    """The ``[files] dir`` store, asked for only when a row has bytes to move."""

    def store() -> FileStore:
        files = context.config.attributes.get("files")
        if not isinstance(files, FileStore):
            raise RuntimeError(
                "the database holds messages and documents to move, and no [files] dir was"
                " given: migrate through mailflow db upgrade --config CONFIG"
            )
        return files

    return store


def _convert(
    connection: sa.Connection,
    table: str,
    source: str,
    target: str,
    convert: Callable[[Any], Any],
) -> None:
    """Each row's ``target`` set to its ``source`` converted: bytes to the
    name of their file, or back."""
    for row_id, value in _rows(connection, table, source):
        connection.execute(
            sa.text(f"UPDATE {table} SET {target} = :value WHERE id = :id"),
            {"value": convert(value), "id": row_id},
        )


def _rows(connection: sa.Connection, table: str, column: str) -> Iterator[tuple[int, Any]]:
    """(id, value of ``column``) of every row, a batch at a time: a large archive is
    never in memory at once."""
    last = 0
    while True:
        batch = connection.execute(
            sa.text(f"SELECT id, {column} FROM {table} WHERE id > :last ORDER BY id LIMIT {BATCH}"),
            {"last": last},
        ).all()
        if not batch:
            return
        yield from ((row[0], row[1]) for row in batch)
        last = batch[-1][0]
