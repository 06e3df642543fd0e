"""Applying a reviewer's decision: by an action link, by a reply that starts
with an action word, or by `mailflow act` in the shell, always through
``act``, which names the event; ``steps.move`` applies it and what it
causes, in the caller's transaction.

A language editor who approves may send the correction with it: a
document attached or a ``Summary:`` line becomes the case's new version
(the earlier one is kept) before the case moves on.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.errors import ActionRefused
from mailflow.forms import first_word, reason_from_link, strip_reply
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case, Token
from mailflow.triage import Incoming
from mailflow.words import leading, pgettext
from mailflow.workflow import reviewing, steps, versions
from mailflow.workflow.context import Workflow
from mailflow.workflow.flow import Action, Reviewers, Stage


def act(
    session: Session,
    case: Case,
    workflow: Workflow,
    *,
    word: str,
    actor: str,
    reason: str = "",
    incoming: Incoming | None = None,
) -> str:
    """Apply one reviewer decision and send the emails it causes."""
    stage = workflow.flows.of(case).stage(case.state)
    action = stage.action(word) if stage else None
    if stage is None or action is None:
        allowed = ", ".join(a.word for a in stage.actions) if stage else "none"
        raise ActionRefused(
            f"{case.public_id} is {case.state}: '{word}' is not possible now (possible: {allowed})"
        )
    if incoming is not None and stage.reviewers is Reviewers.EDITORS and action.positive:
        versions.correct(session, case, workflow, incoming)
    # The history says when the administrators decided in a focal point's place.
    for_economy = stage.focal and action.positive and actor in workflow.admins
    economy = reviewing.economy_name(case, workflow) if for_economy else ""
    if for_economy and not _may_stand_in(case, workflow, actor):
        raise ActionRefused(
            f"{case.public_id}: the administrators do not {action.word} for {economy}"
            " ([workflow].admin_endorses = false); its focal point decides"
        )
    steps.move(
        session,
        case,
        workflow,
        action.event,
        actor=actor,
        incoming=incoming,
        reason=reason,
        note=f"{action.event} by the administrator for {economy}"
        + (f": {reason}" if reason else "")
        if for_economy
        else reason,
    )
    return f"{case.public_id}: {action.event} by {actor}"


def _may_stand_in(case: Case, workflow: Workflow, admin: str) -> bool:
    """An administrator decides for the economy's focal point unless
    ``[workflow].admin_endorses`` is false (one who is a focal point of the
    economy decides as such)."""
    return workflow.settings.workflow.admin_endorses or admin in reviewing.focal_points(
        case, workflow
    )


def link_action(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    """An action link was clicked: the token names the action."""
    case = session.get(Case, token.case_id)
    assert case is not None
    if refused := _correction_refused(session, case, workflow, incoming, token.action):
        return refused
    return act(
        session,
        case,
        workflow,
        word=token.action,
        actor=incoming.sender,
        reason=reason_from_link(incoming.parsed.text),
        incoming=incoming,
    )


def reply_action(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    """A plain reply to a review email: its first word names the action
    (an editor's reply that brings a correction approves it)."""
    case = session.get(Case, token.case_id)
    assert case is not None
    stage = workflow.flows.of(case).stage(case.state)
    word, _ = first_word(incoming.parsed.text)
    meaning, reason = leading(strip_reply(incoming.parsed.text), "action", _WORDS)
    action = _meaning(stage, meaning) if stage else None
    reason = reason.strip()
    editor = stage is not None and stage.reviewers is Reviewers.EDITORS
    if stage and action is None and editor and versions.brings_correction(incoming, case):
        action, reason = stage.decision, ""
    if action and (refused := _correction_refused(session, case, workflow, incoming, action.word)):
        return refused
    if stage is None or action is None:
        workflow.send(
            session,
            Outgoing(
                "reply_not_understood",
                incoming.sender,
                {
                    "words": [a.word for a in stage.actions] if stage else [],
                    "first_word": word[:40],
                },
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
        incoming=incoming,
    )


def _correction_refused(
    session: Session, case: Case, workflow: Workflow, incoming: Incoming, word: str
) -> str:
    """An editor approving with a corrected document that cannot be taken
    (too large): nothing moves, the editor hears why and answers the
    review email again. "" when the message may go on."""
    stage = workflow.flows.of(case).stage(case.state)
    if stage is None or stage.reviewers is not Reviewers.EDITORS or word != stage.decision.word:
        return ""
    problems = versions.correction_refused(incoming, case, workflow)
    if not problems:
        return ""
    workflow.send(
        session,
        Outgoing(
            "correction_refused",
            incoming.sender,
            {**reviewing.case_values(case, workflow), "problems": problems},
            case=case,
            answering=incoming,
        ),
    )
    workflow.engine.record(
        session, case, "correction_refused", incoming.sender, incoming.record, note=problems[0].code
    )
    return f"{case.public_id}: correction refused ({problems[0].code})"


# First words of a plain reply, and what they mean: "yes" or "approve" to a
# focal point's email means their positive decision, whatever its name. The
# marked ones are understood in every shipped language ("sí", "đồng ý").
_WORDS = {
    pgettext("action", "approve"): "approve",
    "approved": "approve",
    # Translators: "yes" and "no" as the first word of a reviewer's reply.
    pgettext("action", "yes"): "approve",
    "ok": "approve",
    pgettext("action", "endorse"): "endorse",
    "endorsed": "endorse",
    pgettext("action", "accept"): "accept",
    "accepted": "accept",
    # Translators: a reviewer sends the case back to its author for changes.
    pgettext("action", "changes"): "changes",
    "change": "changes",
    "request": "changes",
    "revise": "changes",
    pgettext("action", "reject"): "reject",
    "rejected": "reject",
    pgettext("action", "no"): "reject",
}
_POSITIVE = {"approve", "endorse", "accept"}


def _meaning(stage: Stage, word: str) -> Action | None:
    meaning = _WORDS.get(word, "")
    if meaning in _POSITIVE:
        return stage.decision
    return stage.action(meaning)
