"""who leased an email last, so that a restarted host frees its own at once

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 03:00:00

A ``mailflow run`` killed while sending leaves the emails it had leased
to wait for the lease to run out (up to 3 minutes with SMTP). The lease
now names its process (its machine's boot and pid namespace, its pid and
when it started), and a host starting on that machine frees at once the
leases of its processes that are gone. Emails leased before this step
name no one: their leases run out as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("leased_by", sa.String(300), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "leased_by")
