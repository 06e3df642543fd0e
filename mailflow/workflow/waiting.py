"""What waits, on whom, and since when: read from the database, for the
administrator's daily summary and for the authors' "where it stands"
emails. Read-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.store.models import Case, TimedStep
from mailflow.workflow import review
from mailflow.workflow.context import Workflow
from mailflow.workflow.states import State

WAITING = (
    State.PENDING_CONFIRMATION,
    State.INCOMPLETE,
    State.ADMIN_REVIEW,
    State.FOCAL_REVIEW,
    State.HOST_REVIEW,
    State.CHANGES_REQUESTED,
)


@dataclass(frozen=True)
class Waiting:
    case: Case
    since: datetime
    on: str  # who it waits on, as a sentence part: "the focal point of Chile"
    reminders: int
    escalated: bool
    on_admin: bool  # the administrator can act on it now


def subject_of(case: Case) -> str:
    return f"case:{case.id}"


def steps_taken(session: Session, case: Case, kind: str) -> int:
    """How many of this kind of timed step this case had at its current stage."""
    return int(
        session.scalar(
            select(func.count()).where(
                TimedStep.subject == subject_of(case),
                TimedStep.kind == kind,
                TimedStep.episode == case.state_since,
            )
        )
        or 0
    )


def focal_reviewers(case: Case, workflow: Workflow) -> tuple[list[str], str]:
    """Who is asked to endorse this case, and how to name them."""
    code = review.deciding_economy(case)
    economy = workflow.economies.get(code) if code else None
    name = economy.name if economy else "its economy"
    if economy and economy.focal_points:
        return list(economy.focal_points), f"the focal point of {name}"
    if workflow.settings.workflow.no_focal_point == "admin":
        return workflow.admins, f"you, in the place of the focal point of {name} (it has none)"
    return [], f"nobody: {name} has no focal point, so it is on hold for you"


def for_author(case: Case, workflow: Workflow) -> str:
    """Where the case stands, as its author should read it."""
    if case.state == State.ADMIN_REVIEW:
        return "with the administrator"
    reviewers, _ = focal_reviewers(case, workflow)
    code = review.deciding_economy(case)
    economy = workflow.economies.get(code).name if code else "your economy"
    if reviewers and reviewers != workflow.admins:
        return f"with the focal point of {economy}"
    return f"with the administrator, as {economy} has no focal point"


def describe(session: Session, case: Case, workflow: Workflow) -> Waiting:
    state = State(case.state)
    reminders, escalated, on_admin = 0, False, False
    if state in review.FOCAL_STAGES:
        reviewers, on = focal_reviewers(case, workflow)
        reminders = steps_taken(session, case, "reminder")
        escalated = steps_taken(session, case, "escalation") > 0
        on_admin = escalated or not reviewers or reviewers == workflow.admins
    elif state is State.ADMIN_REVIEW:
        on, on_admin = "you (the administrator)", True
    elif state is State.PENDING_CONFIRMATION:
        on = "the author, to confirm their address"
    elif state is State.INCOMPLETE:
        on = "the author, to send what is missing"
    else:
        on = "the author, to send the changes asked for"
    return Waiting(case, case.state_since, on, reminders, escalated, on_admin)


def everything_waiting(session: Session, workflow: Workflow) -> list[Waiting]:
    """Oldest first."""
    cases = session.scalars(
        select(Case).where(Case.state.in_(WAITING)).order_by(Case.state_since, Case.id)
    )
    return [describe(session, case, workflow) for case in cases]
