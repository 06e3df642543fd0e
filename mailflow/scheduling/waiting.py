"""What waits, on whom, and since when: read from the database, for the
administrator's daily summary and for the authors' "where it stands"
emails. Read-only. On whom a case waits is a code (``author_confirm``,
``author_consent``, ``author_missing``, ``author_changes``, ``admin``, ``editor``,
``focal_point``, ``admin_for_focal_point``, ``on_hold``); the templates
say it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, object_session

from mailflow.store import queries
from mailflow.store.models import Case
from mailflow.workflow import reviewing
from mailflow.workflow.context import Workflow
from mailflow.workflow.flow import Reviewers
from mailflow.workflow.states import WAITING, State

_ON_AUTHOR = {
    State.PENDING_CONFIRMATION: "author_confirm",
    State.INCOMPLETE: "author_missing",
    State.CHANGES_REQUESTED: "author_changes",
}
_ON_REVIEWERS = {Reviewers.ADMINS: "admin", Reviewers.EDITORS: "editor"}


@dataclass(frozen=True)
class Waiting:
    case: Case
    since: datetime
    on: str  # on whom it waits, a code (see the module's docstring)
    economy: str  # the deciding economy's name, for the focal stages
    reminders: int
    escalated: bool
    on_admin: bool  # the administrator can act on it now


def subject_of(case: Case) -> str:
    return f"case:{case.id}"


def steps_taken(session: Session, case: Case, kind: str) -> int:
    """How many of this kind of timed step this case had at its current stage."""
    return len(queries.timed_steps_done(session, subject_of(case), kind, case.state_since))


def waits_on(case: Case, workflow: Workflow) -> str:
    """On whom the case waits now, as a code."""
    session = object_session(case)
    if case.state is State.PENDING_CONFIRMATION and session and queries.submitter(session, case):
        return "author_consent"  # submitted for them: their yes to this case
    if case.state in _ON_AUTHOR:
        return _ON_AUTHOR[case.state]
    stage = workflow.flows.of(case).stage(case.state)
    if stage is None:
        return ""
    if not stage.focal:
        return _ON_REVIEWERS[stage.reviewers]
    if reviewing.has_focal_point(case, workflow):
        return "focal_point"
    if reviewing.admins_stand_in(workflow):
        return "admin_for_focal_point"
    return "on_hold"


def describe(session: Session, case: Case, workflow: Workflow) -> Waiting:
    on = waits_on(case, workflow)
    reminders, escalated = 0, False
    stage = workflow.flows.of(case).stage(case.state)
    if stage is not None and stage.focal:
        reminders = steps_taken(session, case, "reminder")
        escalated = steps_taken(session, case, "escalation") > 0
    # Deciding in a focal point's place is the administrators' only when
    # [workflow].admin_endorses allows it.
    stands_in = escalated or on in ("admin_for_focal_point", "on_hold")
    on_admin = on == "admin" or (stands_in and workflow.settings.workflow.admin_endorses)
    economy = reviewing.economy_name(case, workflow)
    return Waiting(case, case.state_since, on, economy, reminders, escalated, on_admin)


def everything_waiting(session: Session, workflow: Workflow) -> list[Waiting]:
    """Oldest first."""
    return [describe(session, case, workflow) for case in queries.cases_in(session, WAITING)]
