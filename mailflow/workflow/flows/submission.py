"""Best practices and experiences: mail to ``submit@`` and everything after.

A new message opens a case. An unregistered sender is asked to confirm
their address first (``pending_confirmation``); a registered one gets, in
one email, either everything still to fix (``incomplete``) or the
acknowledgement, and the case goes through the reviewer stages of
``[workflow].stages`` to the archive. A reply in the case's thread (its
reply token, or the case ID in the subject) adds what was missing or
revises the case.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session, object_session

from mailflow.forms import parse_form
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case, Participant
from mailflow.store.queries import own_case
from mailflow.triage import Incoming, failed_dmarc
from mailflow.vocab import Kind
from mailflow.workflow import (
    fields,
    participants,
    publishing,
    recall,
    reviewing,
    steps,
    validation,
    versions,
)
from mailflow.workflow.context import Workflow
from mailflow.workflow.fields import Problem
from mailflow.workflow.flow import APPROVE, CHANGES, ENDORSE, REJECT, Flow, Reviewers, Stage, Taken
from mailflow.workflow.states import Event, State

STAGES = {
    "admin": Stage(
        "admin", State.ADMIN_REVIEW, Reviewers.ADMINS, (APPROVE, CHANGES, REJECT), "admin_review"
    ),
    "editor": Stage(
        "editor", State.EDITOR_REVIEW, Reviewers.EDITORS, (APPROVE, CHANGES), "editor_review"
    ),
    "focal_point": Stage(
        "focal_point",
        State.FOCAL_REVIEW,
        Reviewers.FOCAL_POINTS,
        (ENDORSE, CHANGES, REJECT),
        "focal_review",
    ),
}
_CASE_ID = re.compile(r"\b((?:BP|EX)-\d{4}-\d{4})\b", re.IGNORECASE)


def build(stages: list[str]) -> Flow:
    """The submission flow through the stages ``[workflow].stages`` names."""
    return Flow(
        name="submission",
        kinds=(Kind.BEST_PRACTICE, Kind.EXPERIENCE),
        stages=tuple(STAGES[name] for name in stages),
        done=State.PUBLISHED,
        effects={
            Event.CONFIRMED: (steps.go_on,),
            Event.COMPLETED: (steps.tell_author("submission_ack", reply="case", answer=True),),
            (State.ADMIN_REVIEW, Event.APPROVED): (
                steps.tell_author("case_approved", reply="case"),
            ),
            Event.ENDORSED: (
                validation.record,
                publish,
                steps.tell_author("case_published", reply="case"),
                steps.tell_admins("endorsed"),
            ),
            Event.CHANGES_REQUESTED: (
                steps.tell_author("changes_requested", reply="case"),
                steps.tell_admins("changes_requested", unless_theirs=True),
            ),
            Event.REJECTED: (
                steps.tell_author("case_rejected", reply="case"),
                steps.tell_admins("rejected", unless_theirs=True),
            ),
            Event.REVISED: (steps.tell_author("revision_received", reply="case", answer=True),),
            Event.WITHDRAWN: (steps.withdrawn,),
            Event.UNPUBLISHED: (take_off, steps.tell_author("case_unpublished", reply="case")),
            Event.REPUBLISHED: (publish, steps.tell_author("case_published", reply="case")),
        },
        missing=missing,
        take=take,
        context=context,
        incomplete_mail="submission_incomplete",
        publishes=True,
    )


def handle_submission(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    """Mail to ``submit@``: a new case, or a revision of one named in the
    subject by its own author."""
    match = _CASE_ID.search(incoming.parsed.subject)
    case = own_case(session, match[1], incoming.sender) if match else None
    if case is not None:
        return steps.revise(session, case, incoming, workflow)
    return open_submission(session, incoming, workflow)


def open_submission(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    """A new case from its author; with an ``Author:`` line naming someone
    else's address, an administrator's submission for that person (only an
    administrator may: anyone else is told so, and nothing is opened). An
    ``Author:`` line naming the sender, or only a name, from anyone but an
    administrator, is their own submission."""
    written_author = parse_form(incoming.parsed.text).get("author")
    named = fields.read_author(written_author) if written_author else None
    by_admin = named is not None and _from_an_admin(incoming, workflow)
    if isinstance(named, Problem) and by_admin:
        return refuse_author(session, incoming, workflow, "bad_address")
    if isinstance(named, fields.Author) and named.email != incoming.sender:
        if not by_admin:
            return refuse_author(session, incoming, workflow, "not_admin")
        case = open_for_author(session, incoming, workflow, named)
        acknowledge_submitter(session, case, incoming, workflow)
        return f"{case.public_id}: submitted for {named.email}, waiting for their agreement"
    parsed = incoming.parsed
    author, submission = participants.introduce(session, parsed, workflow.economies, workflow.clock)
    values = _opening(incoming, submission, author)
    case = steps.open_case(session, workflow, incoming, author, submission.kind, values)
    problems = [*submission.problems, *versions.attach_document(session, case, incoming, workflow)]
    return steps.begin(session, case, workflow, incoming, problems)


def open_for_author(
    session: Session, incoming: Incoming, workflow: Workflow, named: fields.Author
) -> Case:
    """A case an administrator submits for ``named``: its author is that
    person (found, or added with the name the line gives), and it waits in
    ``pending_confirmation`` for their agreement even when they are
    registered, since agreeing to one's address is not agreeing to a text
    under one's name. Problems in the form go to the author with the
    request, as for their own first submission."""
    submission = fields.read_submission(parse_form(incoming.parsed.text), workflow.economies)
    author = participants.find_or_add(session, named.email, workflow.clock)
    participants.learn(
        author,
        name=named.name or None,
        economy=submission.economy,
        organization=submission.organization,
    )
    case = workflow.engine.open_case(
        session,
        kind=submission.kind,
        author=author,
        state=State.PENDING_CONFIRMATION,
        message=incoming.record,
        thread_id=incoming.parsed.message_id,
        submitted_by=incoming.sender,
        values=_opening(incoming, submission, author),
    )
    problems = [*submission.problems, *versions.attach_document(session, case, incoming, workflow)]
    steps.ask_to_confirm(session, author.email, incoming, workflow, case, problems)
    return case


def acknowledge_submitter(
    session: Session, case: Case, incoming: Incoming, workflow: Workflow
) -> None:
    """The administrator hears that the case waits for its author."""
    workflow.send(
        session,
        Outgoing(
            "submitted_for_author",
            incoming.sender,
            reviewing.case_values(case, workflow),
            case=case,
            answering=incoming,
            earned=True,
        ),
    )


def refuse_author(session: Session, incoming: Incoming, workflow: Workflow, reason: str) -> str:
    """An ``Author:`` line we cannot follow: the sender is told why, and
    nothing is opened, so no case goes out under the wrong name."""
    workflow.send(
        session,
        Outgoing(
            "author_refused",
            incoming.sender,
            {"reason": reason, "title": fields.title_from_subject(incoming.parsed.subject)},
            answering=incoming,
        ),
    )
    return f"submission refused: Author: line ({reason})"


def _opening(
    incoming: Incoming, submission: fields.Submission, author: Participant
) -> dict[str, object]:
    """A new case's fields: the message's title and the form's values, with
    the author's economy and organization where the form gives none."""
    values: dict[str, object] = {
        "title": fields.title_from_subject(incoming.parsed.subject)[:500],
        **fields.given(submission),
    }
    values.pop("kind", None)  # open_case's own, given apart
    values["economy"] = values.get("economy") or author.economy or None
    values["organization"] = values.get("organization") or author.organization
    return values


def _from_an_admin(incoming: Incoming, workflow: Workflow) -> bool:
    """An administrator's address, not refused by our front MTA's DMARC
    check: a forged From must not send requests in someone's name."""
    admins = {address.lower() for address in workflow.admins}
    authserv_id = workflow.settings.security.authserv_id
    return incoming.sender in admins and not failed_dmarc(incoming.parsed, authserv_id)


def missing(case: Case, workflow: Workflow) -> list[Problem]:
    """What the case lacks; a value the author wrote and we could not
    recognise, or a file they sent that is no document, is named as such,
    also after they confirmed their address."""
    lacking = fields.missing(case)
    if not lacking and case.document is not None:
        return []  # complete (the usual case): its messages are not parsed again
    session = object_session(case)
    assert session is not None
    # Such a case waits: a new one (steps.begin) is written first, so that
    # its history, read here, holds this message too.
    session.flush()
    earlier = recall.authors_messages(session, case)
    problems = [*recall.unrecognised(earlier, case, workflow.economies), *lacking]
    if case.document is None:
        largest = workflow.settings.limits.max_attachment_bytes
        problems.append(recall.document_problem(earlier, largest))
    return problems


def take(session: Session, case: Case, incoming: Incoming, workflow: Workflow) -> Taken:
    """The author's reply: its form lines and its document."""
    submission = fields.read_submission(parse_form(incoming.parsed.text), workflow.economies)
    changed = fields.apply(case, submission)
    document_problems = versions.attach_document(session, case, incoming, workflow)
    if incoming.parsed.attachments and not document_problems:
        changed.append("document")
    return Taken(changed, [*submission.problems, *document_problems])


def context(case: Case, workflow: Workflow) -> dict[str, Any]:
    return {}


def publish(step: steps.Step) -> None:
    publishing.publish(step.session, step.case, step.workflow)


def take_off(step: steps.Step) -> None:
    publishing.take_off(step.session, step.case, step.workflow)
