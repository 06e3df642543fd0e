"""archive publications

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 02:03:52.793025
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "publications",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("area", sa.Integer(), nullable=False),
        sa.Column("area_seq", sa.Integer(), nullable=False),
        sa.Column("economy", sa.String(length=2), nullable=False),
        sa.Column("economy_seq", sa.Integer(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("case_id"),
        sa.UniqueConstraint("seq"),
    )
    with op.batch_alter_table("publications", schema=None) as batch_op:
        batch_op.create_index("ix_publications_area", ["area", "area_seq"], unique=False)
        batch_op.create_index("ix_publications_economy", ["economy", "economy_seq"], unique=False)

    op.create_table(
        "site_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("site_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_site_changes_done_at"), ["done_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("site_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_site_changes_done_at"))

    op.drop_table("site_changes")
    with op.batch_alter_table("publications", schema=None) as batch_op:
        batch_op.drop_index("ix_publications_economy")
        batch_op.drop_index("ix_publications_area")

    op.drop_table("publications")
