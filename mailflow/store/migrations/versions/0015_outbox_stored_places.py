"""review emails kept in the outbox without their document's bytes

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 21:10:00

A review email attaches the case's document, which the files store keeps
already: the outbox now keeps the email without the document's base64 and
notes where it goes back (``stored_places``); the drain puts it back as it
sends the email (notify/compose.py). Emails written before stay whole.
Going back, every email not yet sent gets its documents' bytes again, from
the ``[files] dir`` folder that ``mailflow db upgrade`` hands to this step.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from mailflow.notify.compose import put_back
from mailflow.store.files import FileStore

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("stored_places", sa.JSON(), nullable=True))


def downgrade() -> None:
    outbox = sa.table(
        "outbox",
        sa.column("id", sa.Integer),
        sa.column("raw", sa.LargeBinary),
        sa.column("stored_places", sa.JSON),
        sa.column("sent_at", sa.DateTime),
    )
    connection = op.get_bind()
    waiting = connection.execute(
        sa.select(outbox.c.id).where(
            outbox.c.stored_places.is_not(None), outbox.c.sent_at.is_(None)
        )
    ).scalars()
    # One email at a time: whole again, a review email is as large as its
    # document (up to [outbound] max_attachment_bytes).
    for row_id in list(waiting):
        raw, places = connection.execute(
            sa.select(outbox.c.raw, outbox.c.stored_places).where(outbox.c.id == row_id)
        ).one()
        whole = put_back(raw, places, _files().read)
        connection.execute(sa.update(outbox).where(outbox.c.id == row_id).values(raw=whole))
    op.drop_column("outbox", "stored_places")


def _files() -> FileStore:
    files = context.config.attributes.get("files")
    if not isinstance(files, FileStore):
        raise RuntimeError(
            "emails waiting in the outbox need their documents from the [files] dir, and"
            ' none was given to this step (config.attributes["files"], as mailflow db upgrade'
            " gives it)"
        )
    return files
