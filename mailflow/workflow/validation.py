"""How a case was validated (SPEC section 4): endorsed by a focal point of
its economy, or by the administrator in the focal point's place, because
the economy had no focal point or because its focal point did not answer.

Decided once, when the case is endorsed, from who endorsed and the
history of the stay at the focal point that the endorsement ended; kept on
the case (``Case.validation``, ``Case.focal_silent_days``), so the archive
page and the report read it without the history, and a case published
again keeps it. Migration 0007 fills it in for cases endorsed before.
Python keeps the code and the days; ``templates/site/_validation.j2``
says it.
"""

from __future__ import annotations

from enum import StrEnum

from mailflow.store import queries
from mailflow.workflow import reviewing
from mailflow.workflow.flow import Step
from mailflow.workflow.states import State


class Validation(StrEnum):
    FOCAL_POINT = "focal_point"  # a focal point of the case's economy endorsed it
    NO_FOCAL_POINT = "no_focal_point"  # the administrator, for an economy without one
    SILENT_FOCAL_POINT = "silent_focal_point"  # the administrator, after the silence


def record(step: Step) -> None:
    """An effect of the endorsement. An administrator who is also a focal
    point of the economy endorses as its focal point. The administrator
    endorsing for an economy that has focal points, escalated or not (from
    the shell), does so because they did not answer: for as many days as
    the case waited for them before the escalation (or, without one, before
    the endorsement)."""
    case, workflow = step.case, step.workflow
    focal_points = reviewing.focal_points(case, workflow)
    if not step.by_admin or step.actor in focal_points:
        case.validation, case.focal_silent_days = Validation.FOCAL_POINT, None
    elif not focal_points:
        case.validation, case.focal_silent_days = Validation.NO_FOCAL_POINT, None
    else:
        stay = queries.last_stay(step.session, case.id, State(step.from_state))
        escalation = next((event.at for event in stay if event.event == "escalated"), None)
        silent_until = escalation or workflow.clock.now()
        case.validation = Validation.SILENT_FOCAL_POINT
        case.focal_silent_days = (silent_until - stay[0].at).days if stay else None
