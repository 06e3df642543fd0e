"""Mail to ``register@`` and the confirmation that completes it.

Registration is double opt-in: a participant exists as registered only
after a reply from the address itself. Confirming also releases every
submission that waited for it, so contributing never needs a separate
registration step (comments and internship applications wait the same way).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.digest import subscriptions
from mailflow.forms import SUBMISSION_KEYS, parse_form
from mailflow.notify.outbox import Outgoing
from mailflow.routing import Route
from mailflow.store import queries
from mailflow.store.models import Case, Participant, Token
from mailflow.triage import Incoming
from mailflow.workflow import participants, steps
from mailflow.workflow.context import Workflow
from mailflow.workflow.fields import Problem
from mailflow.workflow.flows import internship
from mailflow.workflow.states import Event, State


def handle_register(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    participant, form = participants.introduce(
        session, incoming.parsed, workflow.economies, workflow.clock
    )
    if participant.confirmed_at is not None:
        workflow.send(
            session,
            Outgoing(
                "already_registered",
                participant.email,
                {"participant": participant},
                answering=incoming,
            ),
        )
        # An Economy: line fills a commenter's empty economy; an application
        # that waited only for it goes on.
        taken_up = internship.resume_applications(session, participant, incoming, workflow)
        return "; ".join(filter(None, ("register: already registered", taken_up)))
    problems = steps.merge(
        [*(p for p in form.problems if p.field == "economy"), *_missing(participant)]
    )
    if problems:
        workflow.send(
            session,
            Outgoing(
                "register_incomplete",
                participant.email,
                {"participant": participant, "problems": problems},
                answering=incoming,
                reply_to=workflow.router.address(Route.REGISTER),
            ),
        )
        return f"register: incomplete ({len(problems)} to fix)"
    if subscriptions.wants_digests(incoming.parsed.text):
        subscriptions.join_when_registered(session, participant.email, workflow)
    steps.ask_to_confirm(session, participant.email, incoming, workflow, None)
    return "register: waiting for the sender to confirm"


def confirm(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    participant = session.get(Participant, token.participant_id)
    assert participant is not None
    participants.learn_from_confirming(participant, incoming.parsed, workflow.economies)
    participant.confirmed_at = workflow.clock.now()
    subscriptions.registered(session, participant.email, workflow)
    waiting = queries.waiting_for_confirmation(session, participant.id)
    if not waiting:
        workflow.send(
            session,
            Outgoing(
                "welcome", participant.email, {"participant": participant}, answering=incoming
            ),
        )
        return f"confirmed {participant.email}"
    answered = _answered_case(waiting, incoming)
    for case in waiting:
        # The reply to the confirmation may bring what the case lacked: it
        # confirms and completes in one go.
        taken = steps.take_reply(session, case, incoming, workflow) if case is answered else None
        steps.move(
            session,
            case,
            workflow,
            Event.CONFIRMED,
            actor=participant.email,
            incoming=incoming,
            problems=tuple(taken.problems) if taken else (),
            just_registered=True,
        )
    return f"confirmed {participant.email}; {len(waiting)} case(s) went on"


def agree(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    """The author agrees to the publication of a case an administrator
    submitted for them (their ``consent`` token, bound to that case). It is
    a reply from their own address, so it registers them too, if they were
    not yet; their other waiting cases wait for their own answers."""
    # Locked and read afresh: the tick that expires an unanswered request
    # takes the same row, so a late yes never follows the sender's "expired".
    case = session.get(Case, token.case_id, with_for_update=True, populate_existing=True)
    assert case is not None
    if case.state != State.PENDING_CONFIRMATION:
        return f"{case.public_id}: agreement came after the case was {case.state}"
    author = case.author
    newly_registered = author.confirmed_at is None
    if newly_registered:
        participants.learn_from_confirming(author, incoming.parsed, workflow.economies)
        author.confirmed_at = workflow.clock.now()
        subscriptions.registered(session, author.email, workflow)
    # Like a confirmation, the reply may bring what the case lacked.
    taken = steps.take_reply(session, case, incoming, workflow) if _brings(incoming) else None
    steps.move(
        session,
        case,
        workflow,
        Event.CONFIRMED,
        actor=author.email,
        incoming=incoming,
        note="the author agreed to its publication",
        problems=tuple(taken.problems) if taken else (),
        just_registered=newly_registered,
    )
    return f"{case.public_id}: {author.email} agreed"


def _answered_case(waiting: list[Case], incoming: Incoming) -> Case | None:
    """The case a reply to a confirmation is about: the one its subject
    names, or the only one waiting. A click on the Confirm link (its
    prefilled body) brings nothing to apply."""
    if not _brings(incoming):
        return None
    named = [case for case in waiting if case.public_id in incoming.parsed.subject]
    if named:
        return named[0]
    return waiting[0] if len(waiting) == 1 else None


def _brings(incoming: Incoming) -> bool:
    """Whether a reply brings form lines or a document to apply."""
    keys = {**SUBMISSION_KEYS, **internship.APPLICATION_KEYS}
    return bool(incoming.parsed.attachments or parse_form(incoming.parsed.text, keys))


def _missing(participant: Participant) -> list[Problem]:
    wanted = {
        "name": participant.name,
        "economy": participant.economy,
        "organization": participant.organization,
    }
    return [Problem(field) for field, value in wanted.items() if not value]
