"""The administrator's daily summary (SPEC section 4): everything waiting,
oldest first, on whom it waits, with action links for what the
administrator can decide now; the mail kept without an answer and the
subscribers suspended for bouncing since the last summary. Nothing is sent when nothing waits."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.notify.outbox import Outgoing
from mailflow.store.models import InboundMessage, Subscriber
from mailflow.workflow import reviewing, waiting
from mailflow.workflow.context import Workflow

MAX_LISTED = 100


def send_daily_summary(session: Session, workflow: Workflow, since: datetime | None) -> bool:
    now = workflow.clock.now()
    since = since or now - timedelta(days=1)
    items = waiting.everything_waiting(session, workflow)
    unroutable = session.execute(
        select(InboundMessage.received_at, InboundMessage.sender, InboundMessage.subject)
        .where(InboundMessage.outcome == "unroutable", InboundMessage.received_at > since)
        .order_by(InboundMessage.received_at)
        .limit(MAX_LISTED)
    ).all()
    suspended = session.scalars(
        select(Subscriber.email)
        .where(Subscriber.suspended_at > since)
        .order_by(Subscriber.suspended_at)
        .limit(MAX_LISTED)
    ).all()
    if not items and not unroutable and not suspended:
        return False
    ignored = session.scalar(
        select(func.count()).where(
            InboundMessage.outcome == "ignored", InboundMessage.received_at > since
        )
    )
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
                    "ignored": ignored,
                    "since": since,
                    "now": now,
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
        "title": case.title,
        "flow": workflow.flows.of(case).name,
        "on": item.on,
        "economy": item.economy,
        "since": item.since,
        "days": (workflow.clock.now() - item.since).days,
        "reminders": item.reminders,
        "escalated": item.escalated,
        "links": links,
    }
