"""Mail to ``actions+TOKEN@``: every action link and every reply to one of
our notifications arrives here.

The token decides what the message means. A token that is unknown, used,
expired, stale or sent from the wrong address changes nothing and does not
spend the token of its rightful owner, and neither does a review token of
someone who no longer reviews the case (removed from the roster or the
config since the review email); the refusal is written to the case
history, and the sender gets one short explanation (at most one per
address per hour, and never with action links in it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from mailflow.digest import subscriptions
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case, CaseEvent, Token
from mailflow.tokens import Refusal
from mailflow.triage import Incoming, failed_dmarc
from mailflow.workflow import decisions, registration, reviewing, roster, steps
from mailflow.workflow.context import Workflow
from mailflow.workflow.flow import ALL_ACTIONS

TokenHandler = Callable[[Session, Incoming, Workflow, Token], str]


# action -> (handler, whether acting uses the token up). A reply token of
# an incomplete case stays valid while the case waits for its author: each
# reply may bring one more missing piece.
TOKEN_ACTIONS: dict[str, tuple[TokenHandler, bool]] = {
    "confirm": (registration.confirm, True),
    "consent": (registration.agree, True),
    "subscribe": (subscriptions.confirm, True),
    "roster": (roster.confirm, False),  # used up by a yes only (roster.says_yes)
    "author": (steps.author_reply, False),
    "review": (decisions.reply_action, False),  # used up only when it acts
    **{action.word: (decisions.link_action, True) for action in ALL_ACTIONS},
}

REVIEW_HANDLERS = (decisions.link_action, decisions.reply_action)
EXPLANATION_INTERVAL = timedelta(hours=1)


def handle_action(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    assert incoming.destination is not None
    secret = incoming.destination.tag
    verdict = workflow.tokens.verify(session, secret, incoming.sender)
    token = verdict.token
    if failed_dmarc(incoming.parsed, workflow.settings.security.authserv_id):
        return refuse(session, incoming, workflow, token, Refusal.UNAUTHENTICATED)
    if token is None or verdict.refusal is not None:
        return refuse(session, incoming, workflow, token, verdict.refusal or Refusal.UNKNOWN)
    handler, single_use = TOKEN_ACTIONS[token.action]
    if handler in REVIEW_HANDLERS and not _still_reviews(session, token, workflow, incoming.sender):
        return refuse(session, incoming, workflow, token, Refusal.NOT_REVIEWER)
    if single_use and not workflow.tokens.use(session, token):
        return refuse(session, incoming, workflow, token, Refusal.USED)
    return handler(session, incoming, workflow, token)


def _still_reviews(session: Session, token: Token, workflow: Workflow, sender: str) -> bool:
    case = session.get(Case, token.case_id)
    stage = workflow.flows.of(case).stage(case.state) if case else None
    return case is None or stage is None or reviewing.may_decide(stage, case, workflow, sender)


def refuse(
    session: Session, incoming: Incoming, workflow: Workflow, token: Token | None, refusal: Refusal
) -> str:
    case = session.get(Case, token.case_id) if token and token.case_id else None
    if case is not None:
        workflow.engine.record(
            session,
            case,
            "action_refused",
            incoming.sender,
            incoming.record,
            note=f"{token.action if token else '?'}: token {refusal}",
        )
    if refusal is Refusal.UNAUTHENTICATED:
        return "action refused: DMARC failed for the sender (not answered: it may be forged)"
    if workflow.sent_lately(session, incoming.sender, "token_refused", EXPLANATION_INTERVAL):
        return f"action refused ({refusal}); explained within the hour already"
    workflow.send(
        session,
        Outgoing(
            "token_refused",
            incoming.sender,
            {
                "refusal": refusal.value,
                "action": token.action if token else "",
                "first": _last_decision(case),
            },
            case=case,
            answering=incoming,
        ),
    )
    return f"action refused ({refusal})"


def _last_decision(case: Case | None) -> CaseEvent | None:
    """Who moved the case on: told to the one who came second."""
    moves = [e for e in (case.events if case else []) if e.to_state]
    return moves[-1] if moves else None
