"""the focal point roster: people, every change, and the config last seeded

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "focal_points",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("economy", sa.String(length=2), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("added_by", sa.String(length=320), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("economy", "email", "role"),
    )
    op.create_index("ix_focal_points_economy", "focal_points", ["economy"])
    op.create_index("ix_focal_points_email", "focal_points", ["email"])
    op.create_table(
        "roster_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("economy", sa.String(length=2), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("what", sa.String(length=40), nullable=False),
        sa.Column("by", sa.String(length=320), nullable=False),
        sa.Column("how", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_roster_changes_at", "roster_changes", ["at"])
    op.create_table(
        "roster_seeds",
        sa.Column("economy", sa.String(length=2), primary_key=True),
        sa.Column("addresses", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("roster_seeds")
    op.drop_table("roster_changes")
    op.drop_table("focal_points")
