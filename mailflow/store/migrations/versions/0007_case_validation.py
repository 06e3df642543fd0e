"""how a case was validated, kept on the case; filled in from the history

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 03:00:00

Cases endorsed before this revision get their validation from their
history, by the rule ``workflow/validation.py`` applies at the time: the
endorsement row says whether the administrator endorsed ("endorsed by the
administrator for ..."), and an ``escalated`` row in the same stay at the
focal point says that the focal point had been silent, for the days from
entering the stay to the escalation, unless a ``held`` row says that the
economy had no focal point then. The economy's focal points of that time
are not recorded otherwise, so an administrator's endorsement without an
escalation counts as one for an economy without a focal point.

Every case on the archive is queued for its pages to be written again
(``site_changes``), so that the pages of cases published before say how
they were validated, and under the corrected footer, without a rebuild.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ADMIN_NOTE = "endorsed by the administrator for "
_FOCAL_REVIEW = "focal_review"

cases = sa.table(
    "cases",
    sa.column("id", sa.Integer),
    sa.column("validation", sa.String),
    sa.column("focal_silent_days", sa.Integer),
)
publications = sa.table(
    "publications",
    sa.column("case_id", sa.Integer),
    sa.column("withdrawn_at", sa.DateTime(timezone=True)),
)
site_changes = sa.table(
    "site_changes",
    sa.column("case_id", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
case_events = sa.table(
    "case_events",
    sa.column("id", sa.Integer),
    sa.column("case_id", sa.Integer),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("event", sa.String),
    sa.column("to_state", sa.String),
    sa.column("note", sa.Text),
)


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("validation", sa.String(length=30), nullable=True))
        batch.add_column(sa.Column("focal_silent_days", sa.Integer(), nullable=True))
    connection = op.get_bind()
    endorsed = sa.select(case_events.c.case_id).where(case_events.c.event == "endorsed")
    rows = connection.execute(
        sa.select(
            case_events.c.case_id,
            case_events.c.at,
            case_events.c.event,
            case_events.c.to_state,
            case_events.c.note,
        )
        .where(case_events.c.case_id.in_(endorsed))
        .order_by(case_events.c.case_id, case_events.c.id)
    )
    history: dict[int, list[Any]] = {}
    for row in rows:
        history.setdefault(row.case_id, []).append(row)
    for case_id, events in history.items():
        validation, days = _validation(events)
        connection.execute(
            sa.update(cases)
            .where(cases.c.id == case_id)
            .values(validation=validation, focal_silent_days=days)
        )
    on_the_archive = sa.select(publications.c.case_id, sa.func.current_timestamp()).where(
        publications.c.withdrawn_at.is_(None)
    )
    connection.execute(site_changes.insert().from_select(["case_id", "created_at"], on_the_archive))


def _validation(events: list[Any]) -> tuple[str, int | None]:
    """The last endorsement of a case, read with the stay at the focal point
    that it ended."""
    last = max(i for i, e in enumerate(events) if e.event == "endorsed")
    endorsement = events[last]
    if not endorsement.note.startswith(_ADMIN_NOTE):
        return "focal_point", None
    entered = max(
        (i for i, e in enumerate(events[:last]) if e.to_state == _FOCAL_REVIEW), default=0
    )
    stay = events[entered:last]
    escalation = next((e.at for e in stay if e.event == "escalated"), None)
    if escalation is None or any(e.event == "held" for e in stay):
        return "no_focal_point", None
    return "silent_focal_point", (escalation - events[entered].at).days


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later): a batch would copy
    # the table, which the foreign keys to a table with cases refuse.
    op.drop_column("cases", "focal_silent_days")
    op.drop_column("cases", "validation")
