"""The steps every flow shares, written once: moving a case and applying
what the move causes, confirming a first-time sender, asking once for what
is missing, revising and withdrawing by reply, and the effects that tell
the author or the administrators.

``move`` is the one function that applies a flow's effects table: the
engine changes the state (compare-and-set, history row), then the effects
declared for that event run, then the reviewers of the stage reached are
asked. Handlers only decide which event happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from sqlalchemy.orm import Session

from mailflow.forms import strip_reply
from mailflow.notify.outbox import Outgoing
from mailflow.store import queries
from mailflow.store.models import Case, Participant, Token
from mailflow.triage import Incoming
from mailflow.vocab import Kind
from mailflow.words import leading, pgettext
from mailflow.workflow import participants, people, reviewing, status
from mailflow.workflow.context import Workflow
from mailflow.workflow.fields import Problem
from mailflow.workflow.flow import Effect, Step, Taken
from mailflow.workflow.states import EDITABLE, Event, State


def move(
    session: Session,
    case: Case,
    workflow: Workflow,
    event: Event,
    *,
    actor: str,
    incoming: Incoming | None = None,
    reason: str = "",
    note: str | None = None,
    changed: tuple[str, ...] = (),
    just_registered: bool = False,
    problems: tuple[Problem, ...] = (),
) -> State:
    """Apply ``event`` to the case and everything it causes; ``note`` (by
    default the reason) goes into the history."""
    flow = workflow.flows.of(case)
    before = case.state
    after = workflow.engine.transition(
        session,
        case,
        event,
        actor=actor,
        message=incoming.record if incoming else None,
        note=reason if note is None else note,
    )
    step = Step(
        session,
        case,
        workflow,
        event,
        actor,
        before,
        after,
        reason=reason,
        incoming=incoming,
        changed=changed,
        just_registered=just_registered,
        problems=problems,
    )
    left = flow.stage(before)
    if left is not None and after is not before:
        reviewing.leave_stage(step, left)
    for effect in flow.effects_of(before, event):
        effect(step)
    stage = flow.stage(after)
    if stage is not None:
        reviewing.enter_stage(step, stage)
    return after


# -- confirming and completing --------------------------------------------------


def open_case(
    session: Session,
    workflow: Workflow,
    incoming: Incoming,
    author: Participant,
    kind: Kind | None,
    values: Mapping[str, object] | None = None,
) -> Case:
    """A new case from ``author``, who must confirm their address first
    unless they are registered already; ``values`` are its fields. Not
    written yet: ``begin`` moves it on or writes it."""
    registered = author.confirmed_at is not None
    return workflow.engine.open_case(
        session,
        kind=kind,
        author=author,
        state=State.INCOMPLETE if registered else State.PENDING_CONFIRMATION,
        message=incoming.record,
        thread_id=incoming.parsed.message_id,
        values=values,
        written=False,
    )


def begin(
    session: Session, case: Case, workflow: Workflow, incoming: Incoming, problems: list[Problem]
) -> str:
    """A new case, not written yet (``open_case``), goes on: its author is
    asked to confirm their address, or hears at once what is missing, or
    the case moves on (its first transition writes it)."""
    if case.state == State.PENDING_CONFIRMATION:
        session.flush()  # it waits: written now, as ask_to_confirm reads its history
        ask_to_confirm(session, case.author.email, incoming, workflow, case, problems)
        return f"{case.public_id}: waiting for the sender to confirm"
    return advance(session, case, workflow, incoming, problems)


def ask_to_confirm(
    session: Session,
    email: str,
    incoming: Incoming,
    workflow: Workflow,
    case: Case | None,
    problems: list[Problem] | None = None,
) -> None:
    """One email with a Confirm link; replying to it confirms as well. For
    a case, it lists everything still to fix, so that one reply with the
    corrections confirms and completes it.

    A case an administrator submitted for its author asks instead for the
    author's agreement to that one case, with a ``consent`` token bound to
    it: a person registered long ago has confirmed an address, not that
    this text goes out under their name. Agreeing also confirms the address
    (``registration.agree``); the email is a notification, not an answer to
    the administrator's message, which the author never saw."""
    author = participants.find_or_add(session, email, workflow.clock)
    submitted_by = queries.submitter(session, case) if case is not None else None
    if case is not None:
        flow = workflow.flows.of(case)
        problems = merge([*(problems or []), *flow.missing(case, workflow)])
    if submitted_by is not None:
        secret = workflow.tokens.issue(session, "consent", email, case=case, participant=author)
    else:
        secret = workflow.tokens.issue(session, "confirm", email, participant=author)
    address = workflow.action_address(secret)
    workflow.send(
        session,
        Outgoing(
            "submission_confirm" if case else "register_confirm",
            email,
            {
                **(reviewing.case_values(case, workflow) if case else {}),
                "participant": author,
                "confirm_address": address,
                "confirm_days": workflow.settings.workflow.confirm_days,
                "problems": problems or [],
                "submitted_by": submitted_by,
            },
            case=case,
            answering=None if submitted_by else incoming,
            reply_to=address,
        ),
    )


def advance(
    session: Session,
    case: Case,
    workflow: Workflow,
    incoming: Incoming | None,
    problems: list[Problem],
    *,
    just_registered: bool = False,
) -> str:
    """An incomplete case moves on when nothing is missing; otherwise its
    author hears, once, everything that is still to fix."""
    flow = workflow.flows.of(case)
    problems = merge([*problems, *flow.missing(case, workflow)])
    if problems:
        workflow.send(
            session,
            Outgoing(
                flow.incomplete_mail,
                case.author.email,
                {
                    **reviewing.case_values(case, workflow),
                    "problems": problems,
                    "just_registered": just_registered,
                },
                case=case,
                answering=incoming,
                reply_to=workflow.author_reply_to(session, case),
            ),
        )
        return f"{case.public_id}: incomplete ({len(problems)} to fix)"
    reached = move(
        session,
        case,
        workflow,
        Event.COMPLETED,
        actor=case.author.email,
        incoming=incoming,
        just_registered=just_registered,
    )
    return f"{case.public_id}: complete, now {reached}"


def go_on(step: Step) -> None:
    """The author confirmed their address (or agreed to a case submitted
    for them): the case goes on as if it had just arrived from a registered
    sender."""
    advance(
        step.session,
        step.case,
        step.workflow,
        step.incoming,
        list(step.problems),
        just_registered=step.just_registered,
    )


def merge(problems: list[Problem]) -> list[Problem]:
    """One line per field: the first problem found for it wins (a value we
    could not recognise beats "is missing")."""
    by_field: dict[str, Problem] = {}
    for problem in problems:
        by_field.setdefault(problem.field, problem)
    return list(by_field.values())


# -- the author's replies --------------------------------------------------------


# The first words of an author's reply that are not a revision, in any
# shipped language ("retirar", "撤回").
_AUTHOR_WORDS = (
    # Translators: an author takes their case back; asks how their cases stand.
    pgettext("action", "withdraw"),
    pgettext("action", "status"),
)


def author_reply(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    """The author answered one of our emails about their case: "withdraw"
    as the first word withdraws it, "status" lists their cases; anything
    else revises it (or, when it cannot be changed, goes to a person)."""
    case = session.get(Case, token.case_id)
    assert case is not None
    word, _ = leading(strip_reply(incoming.parsed.text), "action", _AUTHOR_WORDS)
    if word == "withdraw":
        return withdraw(session, case, incoming, workflow)
    if word == "status":
        return status.answer_status(session, incoming, workflow)
    return revise(session, case, incoming, workflow)


def revise(session: Session, case: Case, incoming: Incoming, workflow: Workflow) -> str:
    """A reply that may change the case, while its state allows that: what
    it brings is applied, and the case goes on from where it was (waiting
    for the confirmation, completed, or back to the reviewers)."""
    state = case.state
    taken = take_reply(session, case, incoming, workflow)
    if taken is None:
        return refuse_revision(session, case, incoming, workflow)
    if state is State.PENDING_CONFIRMATION:
        ask_to_confirm(session, case.author.email, incoming, workflow, case, taken.problems)
        return f"revision of {case.public_id}: still waiting for confirmation"
    if state is State.CHANGES_REQUESTED:
        move(
            session,
            case,
            workflow,
            Event.REVISED,
            actor=incoming.sender,
            incoming=incoming,
            note=", ".join(taken.changed),
            changed=tuple(taken.changed),
        )
        return f"revision of {case.public_id}: back with the reviewers"
    return advance(session, case, workflow, incoming, taken.problems)


def take_reply(
    session: Session, case: Case, incoming: Incoming, workflow: Workflow
) -> Taken | None:
    """Apply what the author's reply brings to the case, and record it;
    None when the case cannot be changed now, or by reply at all."""
    take = workflow.flows.of(case).take
    if case.state not in EDITABLE or take is None:
        return None
    taken = take(session, case, incoming, workflow)
    workflow.engine.record(
        session,
        case,
        "revised",
        incoming.sender,
        incoming.record,
        note=", ".join(taken.changed) or "nothing changed",
    )
    return taken


def refuse_revision(session: Session, case: Case, incoming: Incoming, workflow: Workflow) -> str:
    """The case cannot be changed now, so the reply is a question about it
    (or a wish only a person can grant): it goes to the administrators, and
    the author hears that the case is unchanged and a person will answer."""
    return people.forward_question(session, incoming, workflow, case)


def withdraw(session: Session, case: Case, incoming: Incoming, workflow: Workflow) -> str:
    if workflow.flows.of(case).next_state(case.state, Event.WITHDRAWN) is None:
        return refuse_revision(session, case, incoming, workflow)
    move(session, case, workflow, Event.WITHDRAWN, actor=incoming.sender, incoming=incoming)
    return f"{case.public_id}: withdrawn by its author"


# -- effects ----------------------------------------------------------------------


def tell_author(
    template: str, *, reply: Literal["", "case", "admin"] = "", answer: bool = False
) -> Effect:
    """An effect: the author gets ``template``. ``reply`` makes their reply
    reach the case (to revise or withdraw it) or an administrator;
    ``answer`` threads it as the answer to the message that caused it."""

    def effect(step: Step) -> None:
        session, case, workflow = step.session, step.case, step.workflow
        reply_to = ""
        if reply == "case":
            reply_to = workflow.author_reply_to(session, case)
        elif reply == "admin":
            reply_to = workflow.admins[0]  # a question goes to a person
        context = {
            **reviewing.case_values(case, workflow),
            "reason": step.reason,
            "actor": step.actor,
            "by_admin": step.by_admin,
            "decided_at": step.from_state,
            "just_registered": step.just_registered,
        }
        workflow.send(
            session,
            Outgoing(
                template,
                case.author.email,
                context,
                case=case,
                answering=step.incoming if answer else None,
                reply_to=reply_to,
                earned=answer and case.author.confirmed_at is not None,
            ),
        )

    effect.__qualname__ = f"tell_author({template!r})"
    return effect


def tell_admins(what: str, *, unless_theirs: bool = False) -> Effect:
    """An effect: the administrators hear ``what`` happened; with
    ``unless_theirs``, only when somebody else did it."""

    def effect(step: Step) -> None:
        if unless_theirs and step.by_admin:
            return
        reviewing.tell_admins(
            step.session, step.case, step.workflow, what, step.actor, step.reason, step.told
        )

    effect.__qualname__ = f"tell_admins({what!r})"
    return effect


def withdrawn(step: Step) -> None:
    """The author is told; the administrators too, when reviewers were at
    work on the case."""
    tell_author("case_withdrawn", answer=True)(step)
    at_work = (*step.workflow.flows.review_states(), State.CHANGES_REQUESTED)
    if step.from_state in at_work:
        tell_admins("withdrawn")(step)
