"""outbox rows remember the message they answer, for the loop limit

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("answers_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_outbox_answers_id_inbound_messages", "inbound_messages", ["answers_id"], ["id"]
        )
        batch.create_index("ix_outbox_recipient_created", ["recipient", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_recipient_created")
        batch.drop_constraint("fk_outbox_answers_id_inbound_messages", type_="foreignkey")
        batch.drop_column("answers_id")
