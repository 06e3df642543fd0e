"""Reviewing by email (SPEC section 4): the administrator approves, asks for
changes or rejects; then the focal points of the case's economy endorse,
ask for changes or reject. Comments and internship applications are
reviewed the same way, with the actions of their own flows.

Every reviewer gets one email with one ``mailto:`` link per action (each a
single-use token bound to case, stage, action and person) and a reply token
in ``Reply-To``, so that a plain reply starting with an action word works
too. This module asks; ``decisions.act`` applies what was decided.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailflow.forms import strip_reply
from mailflow.notify.outbox import FileAttachment, Outgoing
from mailflow.notify.render import mailto
from mailflow.store.models import Case
from mailflow.vocab import AREAS, Kind
from mailflow.workflow.context import Workflow
from mailflow.workflow.states import Event, State


@dataclass(frozen=True)
class Action:
    word: str  # what a reply starts with, and the token's action
    label: str  # the button
    event: Event
    colour: str


APPROVE = Action("approve", "Approve", Event.APPROVED, "#1e7b34")
ENDORSE = Action("endorse", "Endorse", Event.ENDORSED, "#1e7b34")
ACCEPT = Action("accept", "Accept", Event.ACCEPTED, "#1e7b34")
CHANGES = Action("changes", "Request changes", Event.CHANGES_REQUESTED, "#9a6700")
REJECT = Action("reject", "Reject", Event.REJECTED, "#b42318")
ALL_ACTIONS = (APPROVE, ENDORSE, ACCEPT, CHANGES, REJECT)

# Who decides what, at which stage, for each kind of case ("" = submissions).
_ACTIONS: dict[str, dict[State, tuple[Action, ...]]] = {
    "": {
        State.ADMIN_REVIEW: (APPROVE, CHANGES, REJECT),
        State.FOCAL_REVIEW: (ENDORSE, CHANGES, REJECT),
    },
    Kind.COMMENT: {State.ADMIN_REVIEW: (APPROVE, REJECT)},
    Kind.INTERNSHIP: {
        State.ADMIN_REVIEW: (APPROVE, REJECT),
        State.HOST_REVIEW: (ACCEPT, REJECT),
    },
}


@dataclass(frozen=True)
class FocalStage:
    """A stage where the focal points of an economy decide: they get
    reminders, and after ``escalate_days`` the administrators may decide in
    their place (``action``, labelled "... on behalf of <economy>")."""

    template: str
    action: Action


FOCAL_STAGES: dict[State, FocalStage] = {
    State.FOCAL_REVIEW: FocalStage("focal_review", ENDORSE),
    State.HOST_REVIEW: FocalStage("host_review", ACCEPT),
}


def actions_at(case: Case) -> tuple[Action, ...]:
    """The decisions possible on this case now (none outside a review stage)."""
    by_state = _ACTIONS.get(case.kind or "", _ACTIONS[""])
    return by_state.get(State(case.state), ())


# First words of a plain reply, and what they mean at each stage.
_WORDS = {
    "approve": "approve",
    "approved": "approve",
    "yes": "approve",
    "ok": "approve",
    "endorse": "endorse",
    "endorsed": "endorse",
    "accept": "accept",
    "accepted": "accept",
    "changes": "changes",
    "change": "changes",
    "request": "changes",
    "revise": "changes",
    "reject": "reject",
    "rejected": "reject",
    "no": "reject",
}
# "yes" or "approve" to a focal point's email means their positive decision.
_POSITIVE = {"approve", "endorse", "accept"}
_PREFILL = re.compile(r"^\s*(reason|comment)s?\b[^:\n]*:\s*", re.IGNORECASE)


def action_for(case: Case, word: str) -> Action | None:
    meaning = _WORDS.get(word, "")
    possible = actions_at(case)
    if meaning in _POSITIVE:
        return next((a for a in possible if a.word in _POSITIVE), None)
    return next((a for a in possible if a.word == meaning), None)


def reason_from_link(text: str) -> str:
    """The reason written under the prefilled "Reason (optional):" line."""
    lines = strip_reply(text).strip().splitlines()
    if lines:
        lines[0] = _PREFILL.sub("", lines[0])
    return "\n".join(lines).strip()


def split_reply(text: str) -> tuple[str, str]:
    """The first word of a plain reply (lower case, without punctuation),
    and the rest of the reply as the reason."""
    parts = [*strip_reply(text).split(maxsplit=1), "", ""]
    return parts[0].lower().strip(".,:;!"), parts[1].strip()


def request_review(
    session: Session,
    case: Case,
    workflow: Workflow,
    reviewers: list[str],
    template: str,
    context: dict[str, object],
    labels: dict[str, str] | None = None,
) -> None:
    """One review email per reviewer, each with its own links; ``labels``
    renames buttons (e.g. "Endorse on behalf of Chile")."""
    document = case.document
    attachments = (
        (FileAttachment(document.filename, document.content_type, document.content),)
        if document
        else ()
    )
    for person in reviewers:
        reply = workflow.tokens.issue(session, "review", person, case=case)
        workflow.send(
            session,
            Outgoing(
                template,
                person,
                {
                    **describe(case, workflow),
                    **context,
                    "links": links_for(session, case, workflow, person, labels),
                },
                case=case,
                reply_to=workflow.action_address(reply),
                attachments=attachments,
            ),
        )


def links_for(
    session: Session,
    case: Case,
    workflow: Workflow,
    person: str,
    labels: dict[str, str] | None = None,
) -> list[dict[str, str]]:
    """One single-use mailto link per action of the case's current stage."""
    links = []
    for action in actions_at(case):
        label = (labels or {}).get(action.word, action.label)
        token = workflow.tokens.issue(session, action.word, person, case=case)
        links.append(
            {
                "word": action.word,
                "label": label,
                "colour": action.colour,
                "url": mailto(
                    workflow.action_address(token),
                    f"{label}: {case.public_id}",
                    "Reason (optional, it is sent to the author):\n\n",
                ),
            }
        )
    return links


def describe(case: Case, workflow: Workflow) -> dict[str, object]:
    """The readable values of a case, for any email about it."""
    return {
        "kind": Kind(case.kind) if case.kind else None,
        "area": AREAS[case.area - 1] if case.area else None,
        "economy": workflow.economies.get(case.economy) if case.economy else None,
    }


def deciding_economy(case: Case) -> str | None:
    """Whose focal points decide: an internship is hosted by the economy
    of the case it is about; a submission belongs to its author's."""
    if case.kind == Kind.INTERNSHIP:
        return case.about.economy if case.about else None
    return case.economy


def send_to_focal_points(session: Session, case: Case, workflow: Workflow) -> None:
    """The decision email of the case's focal stage (endorse, or accept an
    internship) goes to every focal point of the deciding economy; an
    economy without one follows ``[workflow].no_focal_point``."""
    template = FOCAL_STAGES[State(case.state)].template
    code = deciding_economy(case)
    economy = workflow.economies.get(code) if code else None
    focal_points = list(economy.focal_points) if economy else []
    if focal_points:
        request_review(session, case, workflow, focal_points, template, {"no_focal_point": False})
    elif workflow.settings.workflow.no_focal_point == "admin":
        request_review(session, case, workflow, workflow.admins, template, {"no_focal_point": True})
    else:
        workflow.engine.record(
            session,
            case,
            "held",
            "mailflow",
            None,
            note=f"{economy_name(case, workflow)} has no focal point",
        )
        tell_admins(session, case, workflow, "held", "mailflow", "")


def tell_admins(
    session: Session, case: Case, workflow: Workflow, what: str, actor: str, reason: str
) -> None:
    context = {**describe(case, workflow), "what": what, "actor": actor, "reason": reason}
    for admin in workflow.admins:
        workflow.send(session, Outgoing("admin_case_update", admin, context, case=case))


def economy_name(case: Case, workflow: Workflow) -> str:
    """The name of the economy whose focal points decide on the case."""
    code = deciding_economy(case)
    return workflow.economies.get(code).name if code else "its economy"
