"""comments and internship applications: cases about a published case

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 05:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("about_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("preferred_dates", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("funding", sa.String(length=20), nullable=True))
        batch.create_foreign_key("fk_cases_about_id_cases", "cases", ["about_id"], ["id"])
        batch.create_index("ix_cases_about_id", ["about_id"])


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_index("ix_cases_about_id")
        batch.drop_constraint("fk_cases_about_id_cases", type_="foreignkey")
        batch.drop_column("funding")
        batch.drop_column("preferred_dates")
        batch.drop_column("about_id")
