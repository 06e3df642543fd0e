"""Applying a reviewer's decision: by an action link, by a reply that starts
with an action word, or by `mailflow act` in the shell, always through
``act``. The transition, its history row and the emails it causes happen
in the caller's transaction; what follows depends on the kind of case
(submissions here, comments and internships in their own modules).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from mailflow.errors import ActionRefused
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case, InboundMessage, Token
from mailflow.triage import Incoming
from mailflow.vocab import Kind
from mailflow.workflow import comments, internships, publishing
from mailflow.workflow.context import Workflow
from mailflow.workflow.review import (
    APPROVE,
    CHANGES,
    ENDORSE,
    FOCAL_STAGES,
    REJECT,
    Action,
    action_for,
    actions_at,
    describe,
    economy_name,
    reason_from_link,
    send_to_focal_points,
    split_reply,
    tell_admins,
)
from mailflow.workflow.states import State

Consequences = Callable[[Session, Case, Workflow, Action, str, str], None]


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
    possible = actions_at(case)
    action = next((a for a in possible if a.word == word), None)
    if action is None:
        allowed = ", ".join(a.word for a in possible) or "none"
        raise ActionRefused(
            f"{case.public_id} is {state}: '{word}' is not possible now (possible: {allowed})"
        )
    note = reason
    stage = FOCAL_STAGES.get(state)
    if stage and action is stage.action and actor in workflow.admins:
        note = f"{action.event} by the administrator for {economy_name(case, workflow)}" + (
            f": {reason}" if reason else ""
        )
    workflow.engine.transition(session, case, action.event, actor=actor, message=message, note=note)
    _AFTER_DECISION.get(case.kind or "", _after_submission_decision)(
        session, case, workflow, action, actor, reason
    )
    return f"{case.public_id}: {action.event} by {actor}"


def _after_submission_decision(
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


_AFTER_DECISION: dict[str, Consequences] = {
    Kind.COMMENT: comments.decided,
    Kind.INTERNSHIP: internships.decided,
}


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
    action = action_for(case, word)
    if action is None:
        workflow.send(
            session,
            Outgoing(
                "reply_not_understood",
                incoming.sender,
                {"words": [a.word for a in actions_at(case)], "word": word[:40]},
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
