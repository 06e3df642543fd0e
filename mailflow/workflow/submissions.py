"""Mail to ``submit@`` and the author's replies about a submission.

A new message opens a case. An unregistered sender is asked to confirm
their address first and the case waits (``pending_confirmation``); a
registered one gets, in one email, either everything still to fix
(``incomplete``) or the acknowledgement, while the administrators get the
review email with the document attached (``admin_review``). A reply in
the case's thread (its reply token, or the case ID in the subject) adds
what was missing or revises the case.
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy.orm import Session

from mailflow.documents import pick_document
from mailflow.forms import parse_form
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case, Document, Token
from mailflow.triage import Incoming
from mailflow.vocab import Kind
from mailflow.workflow import fields, participants, review
from mailflow.workflow.context import Workflow
from mailflow.workflow.engine import find_own_case
from mailflow.workflow.fields import Problem
from mailflow.workflow.states import EDITABLE, Event, State, next_state

# Withdrawing from these is news for the administrators.
WITH_REVIEWERS = (
    State.ADMIN_REVIEW,
    State.FOCAL_REVIEW,
    State.HOST_REVIEW,
    State.CHANGES_REQUESTED,
)
_CASE_ID = re.compile(r"\b((?:BP|EX)-\d{4}-\d{4})\b", re.IGNORECASE)


def handle_submission(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    case = _case_named_in_subject(session, incoming)
    if case is not None:
        return revise(session, case, incoming, workflow)
    return open_submission(session, incoming, workflow)


def author_reply(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    """The author answered one of our emails about their case: "withdraw"
    as the first word withdraws it; anything else revises it."""
    case = session.get(Case, token.case_id)
    assert case is not None
    word, _ = review.split_reply(incoming.parsed.text)
    if word == "withdraw":
        return withdraw(session, case, incoming, workflow)
    return revise(session, case, incoming, workflow)


def withdraw(session: Session, case: Case, incoming: Incoming, workflow: Workflow) -> str:
    state = State(case.state)
    if next_state(state, Event.WITHDRAWN, case.kind) is None:
        workflow.send(
            session,
            Outgoing("revision_not_editable", incoming.sender, case=case, answering=incoming),
        )
        return f"withdrawal of {case.public_id} refused: it is {state}"
    workflow.engine.transition(
        session, case, Event.WITHDRAWN, actor=incoming.sender, message=incoming.record
    )
    workflow.send(
        session, Outgoing("case_withdrawn", case.author.email, case=case, answering=incoming)
    )
    if state in (
        State.ADMIN_REVIEW,
        State.FOCAL_REVIEW,
        State.HOST_REVIEW,
        State.CHANGES_REQUESTED,
    ):
        review.tell_admins(session, case, workflow, "withdrawn", incoming.sender, "")
    return f"{case.public_id}: withdrawn by its author"


def open_submission(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    parsed = incoming.parsed
    author, submission = participants.introduce(session, parsed, workflow.economies, workflow.clock)
    registered = author.confirmed_at is not None
    case = workflow.engine.open_case(
        session,
        prefix=(submission.kind or Kind.BEST_PRACTICE).prefix,
        author=author,
        state=State.INCOMPLETE if registered else State.PENDING_CONFIRMATION,
        message=incoming.record,
        thread_id=parsed.message_id,
    )
    case.title = fields.title_from_subject(parsed.subject)[:500]
    fields.apply(case, submission)
    case.economy = case.economy or author.economy or None
    case.organization = case.organization or author.organization
    document_problem = _attach_document(session, case, incoming, workflow)
    if not registered:
        ask_to_confirm(session, author.email, incoming, workflow, case)
        return f"submission {case.public_id}: waiting for the sender to confirm"
    return advance(session, case, incoming, workflow, [*submission.problems, *document_problem])


def ask_to_confirm(
    session: Session, email: str, incoming: Incoming, workflow: Workflow, case: Case | None
) -> None:
    """One email with a Confirm link; replying to it confirms as well."""
    author = participants.find_or_add(session, email, workflow.clock)
    secret = workflow.tokens.issue(session, "confirm", email, participant=author)
    address = workflow.action_address(secret)
    workflow.send(
        session,
        Outgoing(
            "submission_confirm" if case else "register_confirm",
            email,
            {
                "participant": author,
                "confirm_address": address,
                "confirm_days": workflow.settings.workflow.confirm_days,
            },
            case=case,
            answering=incoming,
            reply_to=address,
        ),
    )


def advance(
    session: Session,
    case: Case,
    incoming: Incoming,
    workflow: Workflow,
    problems: list[Problem],
    *,
    just_registered: bool = False,
) -> str:
    """An editable case moves on when nothing is missing; otherwise its
    author hears, once, everything that is still to fix."""
    problems = _merge([*problems, *fields.missing(case, workflow.economies)])
    if case.document is None and not any(p.field == "Document" for p in problems):
        problems.append(fields.missing_document([], None))
    context = {"just_registered": just_registered}
    if problems:
        workflow.send(
            session,
            Outgoing(
                "submission_incomplete",
                case.author.email,
                {**context, "problems": problems},
                case=case,
                answering=incoming,
                reply_to=workflow.author_reply_to(session, case),
            ),
        )
        return f"submission {case.public_id}: incomplete ({len(problems)} to fix)"
    workflow.engine.transition(
        session, case, Event.COMPLETED, actor=case.author.email, message=incoming.record
    )
    workflow.send(
        session,
        Outgoing(
            "submission_ack",
            case.author.email,
            context,
            case=case,
            answering=incoming,
            reply_to=workflow.author_reply_to(session, case),
        ),
    )
    review.request_review(session, case, workflow, workflow.admins, "admin_review", {"changed": []})
    return f"submission {case.public_id}: complete, waiting for the administrator"


def revise(session: Session, case: Case, incoming: Incoming, workflow: Workflow) -> str:
    state = State(case.state)
    if state not in EDITABLE:
        workflow.send(
            session,
            Outgoing("revision_not_editable", incoming.sender, case=case, answering=incoming),
        )
        workflow.engine.record(
            session,
            case,
            "revision_refused",
            incoming.sender,
            incoming.record,
            note=f"the case is {state}",
        )
        return f"revision of {case.public_id} refused: it is {state}"
    submission = fields.read_submission(parse_form(incoming.parsed.text), workflow.economies)
    changed = fields.apply(case, submission)
    document_problem = _attach_document(session, case, incoming, workflow)
    if incoming.parsed.attachments and not document_problem:
        changed.append("document")
    if state is not State.CHANGES_REQUESTED:
        _renumber(case)
    workflow.engine.record(
        session,
        case,
        "revised",
        incoming.sender,
        incoming.record,
        note=", ".join(changed) or "nothing changed",
    )
    if state is State.PENDING_CONFIRMATION:
        ask_to_confirm(session, case.author.email, incoming, workflow, case)
        return f"revision of {case.public_id}: still waiting for confirmation"
    if state is State.INCOMPLETE:
        return advance(session, case, incoming, workflow, [*submission.problems, *document_problem])
    workflow.engine.transition(
        session,
        case,
        Event.REVISED,
        actor=incoming.sender,
        message=incoming.record,
        note=", ".join(changed),
    )
    workflow.send(
        session,
        Outgoing(
            "revision_received",
            case.author.email,
            case=case,
            answering=incoming,
            reply_to=workflow.author_reply_to(session, case),
        ),
    )
    review.request_review(
        session, case, workflow, workflow.admins, "admin_review", {"changed": changed}
    )
    return f"revision of {case.public_id}: back with the administrator"


def _attach_document(
    session: Session, case: Case, incoming: Incoming, workflow: Workflow
) -> list[Problem]:
    """Keep the first acceptable attachment; say why none was, if one was sent."""
    attachments = incoming.parsed.attachments
    if not attachments:
        return []
    document, refused = pick_document(attachments)
    if document is None:
        return [fields.missing_document(refused, None)]
    limit = workflow.settings.limits.max_attachment_bytes
    if len(document.content) > limit:
        return [
            fields.missing_document(
                [],
                f"{document.filename} is larger than {limit // 1_048_576} MB; send a smaller file",
            )
        ]
    session.add(
        Document(
            case_id=case.id,
            message_id=incoming.record.id,
            filename=document.filename,
            content_type=document.content_type,
            size=len(document.content),
            sha256=hashlib.sha256(document.content).hexdigest(),
            content=document.content,
            created_at=workflow.clock.now(),
        )
    )
    session.flush()
    session.refresh(case, ["documents"])
    return []


def _renumber(case: Case) -> None:
    """A case whose kind was learnt late takes the right prefix and keeps
    its number (the yearly sequence is shared by all kinds)."""
    if case.kind:
        case.public_id = Kind(case.kind).prefix + case.public_id[2:]


def _merge(problems: list[Problem]) -> list[Problem]:
    """One line per field: a specific problem beats "is missing"."""
    by_field: dict[str, Problem] = {}
    for problem in problems:
        by_field.setdefault(problem.field, problem)
    return list(by_field.values())


def _case_named_in_subject(session: Session, incoming: Incoming) -> Case | None:
    match = _CASE_ID.search(incoming.parsed.subject)
    return find_own_case(session, match[1], incoming.sender) if match else None
