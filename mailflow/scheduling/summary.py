"""The administrator's daily summary (SPEC section 4): everything waiting,
oldest first, on whom it waits, with action links for what the
administrator can decide now; the mail kept without an answer, the
subscribers suspended for bouncing and the addresses whose mail failed for
good since the last summary; and the focal point roster (who is confirmed,
invited, a deputy, away). Nothing is sent when nothing waits."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from mailflow.notify.outbox import Outgoing
from mailflow.scheduling import waiting
from mailflow.store import queries
from mailflow.workflow import reviewing, roster
from mailflow.workflow.context import Workflow

MAX_LISTED = 100


def send_daily_summary(session: Session, workflow: Workflow, since: datetime | None) -> bool:
    now = workflow.clock.now()
    since = since or now - timedelta(days=1)
    items = waiting.everything_waiting(session, workflow)
    unroutable = queries.messages_kept_since(session, "unroutable", since, MAX_LISTED)
    suspended = queries.suspended_since(session, since, MAX_LISTED)
    undeliverable = queries.failed_recipients_since(session, since, MAX_LISTED)
    if not items and not unroutable and not suspended and not undeliverable:
        return False
    ignored = queries.messages_counted_since(session, "ignored", since)
    for admin in workflow.admins:
        entries = [_entry(session, item, workflow, admin) for item in items[:MAX_LISTED]]
        workflow.send(
            session,
            Outgoing(
                "daily_summary",
                admin,
                {
                    "entries": entries,
                    "waiting": len(items),
                    "on_you": sum(1 for item in items if item.on_admin),
                    "not_listed": max(0, len(items) - MAX_LISTED),
                    "unroutable": unroutable,
                    "suspended": suspended,
                    "undeliverable": undeliverable,
                    "ignored": ignored,
                    "since": since,
                    "now": now,
                    **roster.roster_values(session, workflow),
                },
            ),
        )
    return True


def _entry(
    session: Session, item: waiting.Waiting, workflow: Workflow, admin: str
) -> dict[str, object]:
    case = item.case
    links: list[dict[str, str]] = []
    if item.on_admin:
        stage = workflow.flows.of(case).stage(case.state)
        on_behalf = stage is not None and stage.focal
        links = reviewing.links_for(session, case, workflow, admin, on_behalf=on_behalf)
    return {
        "id": case.public_id,
        "case": case,
        "flow": workflow.flows.of(case).name,
        "on": item.on,
        "economy": item.economy,
        "since": item.since,
        "days": (workflow.clock.now() - item.since).days,
        "reminders": item.reminders,
        "escalated": item.escalated,
        "links": links,
    }
