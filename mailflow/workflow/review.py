"""Reviewing by email (SPEC section 4): the administrator approves, asks for
changes or rejects; then the focal points of the case's economy endorse,
ask for changes or reject.

Every reviewer gets one email with one ``mailto:`` link per action (each a
single-use token bound to case, stage, action and person) and a reply token
in ``Reply-To``, so that a plain reply starting with an action word works
too. ``act`` is the one code path for every decision, whether it came by a
link, by a reply or from ``mailflow act`` in the shell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailflow.errors import ActionRefused
from mailflow.forms import strip_reply
from mailflow.notify.outbox import FileAttachment, Outgoing
from mailflow.notify.render import mailto
from mailflow.store.models import Case, InboundMessage, Token
from mailflow.triage import Incoming
from mailflow.vocab import AREAS, Kind
from mailflow.workflow import publishing
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
CHANGES = Action("changes", "Request changes", Event.CHANGES_REQUESTED, "#9a6700")
REJECT = Action("reject", "Reject", Event.REJECTED, "#b42318")

# Who decides what, at which stage.
ACTIONS: dict[State, tuple[Action, ...]] = {
    State.ADMIN_REVIEW: (APPROVE, CHANGES, REJECT),
    State.FOCAL_REVIEW: (ENDORSE, CHANGES, REJECT),
}

# First words of a plain reply, and what they mean at each stage.
_WORDS = {
    "approve": "approve",
    "approved": "approve",
    "yes": "approve",
    "ok": "approve",
    "endorse": "endorse",
    "endorsed": "endorse",
    "changes": "changes",
    "change": "changes",
    "request": "changes",
    "revise": "changes",
    "reject": "reject",
    "rejected": "reject",
    "no": "reject",
}
_SAME_AT_FOCAL_STAGE = {"approve": "endorse"}
_PREFILL = re.compile(r"^\s*(reason|comment)s?\b[^:\n]*:\s*", re.IGNORECASE)


def action_for(state: State, word: str) -> Action | None:
    meaning = _WORDS.get(word, "")
    if state is State.FOCAL_REVIEW:
        meaning = _SAME_AT_FOCAL_STAGE.get(meaning, meaning)
    return next((a for a in ACTIONS.get(state, ()) if a.word == meaning), None)


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
    for action in ACTIONS[State(case.state)]:
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


def act(
    session: Session,
    case: Case,
    workflow: Workflow,
    *,
    word: str,
    actor: str,
    reason: str = "",
    message: InboundMessage | None = None,
) -> str:
    """Apply one reviewer decision and send the emails it causes."""
    state = State(case.state)
    action = next((a for a in ACTIONS.get(state, ()) if a.word == word), None)
    if action is None:
        allowed = ", ".join(a.word for a in ACTIONS.get(state, ())) or "none"
        raise ActionRefused(
            f"{case.public_id} is {state}: '{word}' is not possible now (possible: {allowed})"
        )
    on_behalf = action is ENDORSE and actor in workflow.admins
    note = reason
    if on_behalf:
        note = f"endorsed by the administrator for {economy_name(case, workflow)}" + (
            f": {reason}" if reason else ""
        )
    workflow.engine.transition(session, case, action.event, actor=actor, message=message, note=note)
    _consequences(session, case, workflow, action, actor, reason)
    return f"{case.public_id}: {action.event} by {actor}"


def _consequences(
    session: Session, case: Case, workflow: Workflow, action: Action, actor: str, reason: str
) -> None:
    author = case.author.email
    context = {**describe(case, workflow), "reason": reason, "actor": actor}
    if action is APPROVE:
        workflow.send(
            session,
            Outgoing(
                "case_approved",
                author,
                context,
                case=case,
                reply_to=workflow.author_reply_to(session, case),
            ),
        )
        send_to_focal_points(session, case, workflow)
    elif action is ENDORSE:
        publishing.publish(session, case, workflow)
        workflow.send(session, Outgoing("case_published", author, context, case=case))
        tell_admins(session, case, workflow, "endorsed", actor, reason)
    elif action is CHANGES:
        workflow.send(
            session,
            Outgoing(
                "changes_requested",
                author,
                context,
                case=case,
                reply_to=workflow.author_reply_to(session, case),
            ),
        )
        if actor not in workflow.admins:
            tell_admins(session, case, workflow, "changes_requested", actor, reason)
    elif action is REJECT:
        workflow.send(session, Outgoing("case_rejected", author, context, case=case))
        if actor not in workflow.admins:
            tell_admins(session, case, workflow, "rejected", actor, reason)


def send_to_focal_points(session: Session, case: Case, workflow: Workflow) -> None:
    """The endorse email goes to every focal point of the case's economy;
    an economy without one follows ``[workflow].no_focal_point``."""
    economy = workflow.economies.get(case.economy) if case.economy else None
    focal_points = list(economy.focal_points) if economy else []
    if focal_points:
        request_review(
            session, case, workflow, focal_points, "focal_review", {"no_focal_point": False}
        )
    elif workflow.settings.workflow.no_focal_point == "admin":
        request_review(
            session, case, workflow, workflow.admins, "focal_review", {"no_focal_point": True}
        )
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
    return workflow.economies.get(case.economy).name if case.economy else "its economy"


def link_action(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    """An action link was clicked: the token names the action."""
    case = session.get(Case, token.case_id)
    assert case is not None
    return act(
        session,
        case,
        workflow,
        word=token.action,
        actor=incoming.sender,
        reason=reason_from_link(incoming.parsed.text),
        message=incoming.record,
    )


def reply_action(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    """A plain reply to a review email: its first word names the action."""
    case = session.get(Case, token.case_id)
    assert case is not None
    word, reason = split_reply(incoming.parsed.text)
    action = action_for(State(case.state), word)
    if action is None:
        workflow.send(
            session,
            Outgoing(
                "reply_not_understood",
                incoming.sender,
                {"words": [a.word for a in ACTIONS[State(case.state)]], "word": word[:40]},
                case=case,
                answering=incoming,
            ),
        )
        workflow.engine.record(
            session, case, "reply_not_understood", incoming.sender, incoming.record, note=word[:40]
        )
        return f"{case.public_id}: reply not understood"
    if not workflow.tokens.use(session, token):
        raise ActionRefused(f"{case.public_id}: the reply token was used meanwhile")
    return act(
        session,
        case,
        workflow,
        word=action.word,
        actor=incoming.sender,
        reason=reason,
        message=incoming.record,
    )
