"""Mail to ``internship@``: applying to learn a published case on the field
(SPEC section 6).

An application is a case of its own (``IN-2026-0001``) about the published
one. Like a submission it waits for an unregistered sender to confirm, and
for the missing pieces (the case ID, Motivation, Preferred dates, the
applicant's economy), asked for in one reply. Then the administrators
approve or reject it, and the focal points of the host economy (the
published case's) accept or reject it, with the reminders and escalation
of any focal stage. On acceptance it is funded when the applicant's economy
is travel-eligible and a funded place is free: places are taken by one
conditional increment, so ``[internships].funded_cap`` holds however many
acceptances race.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from mailflow.forms import parse_form
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case, Token
from mailflow.triage import Incoming
from mailflow.vocab import Kind
from mailflow.workflow import participants, review, submissions
from mailflow.workflow.comments import case_url, tell_case_author, unavailable
from mailflow.workflow.context import Workflow
from mailflow.workflow.engine import find_case, find_own_case, take_number_below
from mailflow.workflow.fields import Problem
from mailflow.workflow.states import EDITABLE, Event, State

# Motivation runs to the next key, as a submission's summary does, and is
# kept in the case's summary.
APPLICATION_KEYS = {
    "case": "case",
    "case id": "case",
    "motivation": "summary",
    "why": "summary",
    "preferred dates": "dates",
    "preferred date": "dates",
    "dates": "dates",
    "when": "dates",
    "organization": "organization",
    "organisation": "organization",
}
_CASE_ID = re.compile(r"\b((?:BP|EX)-\d{4}-\d{4})\b", re.IGNORECASE)
_OWN_ID = re.compile(r"\b(IN-\d{4}-\d{4})\b", re.IGNORECASE)
FUNDED_PLACES = "internships:funded"


def handle_internship(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    parsed = incoming.parsed
    own = _own_application(session, incoming)
    if own is not None:
        return revise(session, own, incoming, workflow)
    form = parse_form(parsed.text, APPLICATION_KEYS)
    written = _case_id(parsed.subject, form.get("case", ""), parsed.text)
    about = find_case(session, written) if written else None
    refusal = _refusal(written, about)
    if refusal:
        workflow.send(
            session,
            Outgoing(
                "internship_refused",
                incoming.sender,
                {"reason": refusal, "case_id": written},
                answering=incoming,
            ),
        )
        return f"internship refused: {refusal.replace('_', ' ')} ({written})"
    applicant, told = participants.introduce(session, parsed, workflow.economies, workflow.clock)
    registered = applicant.confirmed_at is not None
    application = workflow.engine.open_case(
        session,
        prefix=Kind.INTERNSHIP.prefix,
        author=applicant,
        state=State.INCOMPLETE if registered else State.PENDING_CONFIRMATION,
        message=incoming.record,
        thread_id=parsed.message_id,
    )
    application.kind = Kind.INTERNSHIP
    _apply(application, form, about)
    application.organization = application.organization or applicant.organization
    if not registered:
        submissions.ask_to_confirm(session, applicant.email, incoming, workflow, application)
        return f"internship {application.public_id}: waiting for the sender to confirm"
    economy_problems = [p for p in told.problems if p.field == "Economy"]
    return advance(session, application, incoming, workflow, economy_problems)


def _refusal(written: str, about: Case | None) -> str:
    """A case named but not there, or not published, is refused at once;
    one not named yet is only a missing piece."""
    return unavailable(about) if written else ""


def _apply(application: Case, form: dict[str, str], about: Case | None) -> list[str]:
    """Take what the form says; returns the names of what changed."""
    changed = []
    if about is not None and application.about_id != about.id:
        application.about = about
        application.title = f"Internship: {about.title}"[:500]
        changed.append("case")
    for field, value, limit in (
        ("summary", form.get("summary", ""), 5000),
        ("preferred_dates", form.get("dates", ""), 500),
        ("organization", form.get("organization", ""), 300),
    ):
        if value and getattr(application, field) != value[:limit]:
            setattr(application, field, value[:limit])
            changed.append(field)
    return changed


def advance(
    session: Session,
    application: Case,
    incoming: Incoming,
    workflow: Workflow,
    problems: list[Problem],
    *,
    just_registered: bool = False,
) -> str:
    """An incomplete application moves on to the administrators when
    nothing is missing; otherwise its applicant hears, once, what to add."""
    application.economy = application.economy or application.author.economy or None
    problems = [*problems, *_missing(application, workflow, problems)]
    context = {**_context(application, workflow), "just_registered": just_registered}
    reply_to = workflow.author_reply_to(session, application)
    if problems:
        workflow.send(
            session,
            Outgoing(
                "internship_incomplete",
                application.author.email,
                {**context, "problems": problems},
                case=application,
                answering=incoming,
                reply_to=reply_to,
            ),
        )
        return f"internship {application.public_id}: incomplete ({len(problems)} to add)"
    workflow.engine.transition(
        session,
        application,
        Event.COMPLETED,
        actor=application.author.email,
        message=incoming.record,
    )
    workflow.send(
        session,
        Outgoing(
            "internship_received",
            application.author.email,
            context,
            case=application,
            answering=incoming,
            reply_to=reply_to,
        ),
    )
    review.request_review(
        session,
        application,
        workflow,
        workflow.admins,
        "internship_review",
        {**context, "applicant": application.author},
    )
    return f"internship {application.public_id}: complete, waiting for the administrator"


def _missing(application: Case, workflow: Workflow, known: list[Problem]) -> list[Problem]:
    said = {p.field for p in known}
    problems = []
    if application.about is None:
        problems.append(
            Problem("Case", "is missing: the ID of the case you want to learn, e.g. BP-2026-0001")
        )
    if not application.summary:
        problems.append(Problem("Motivation", "is missing: why you want to learn this practice"))
    if not application.preferred_dates:
        problems.append(
            Problem("Preferred dates", "is missing: when you could go, e.g. March to May 2027")
        )
    if not application.economy and "Economy" not in said:
        problems.append(Problem("Economy", "is missing", tuple(workflow.economies.names())))
    return problems


def revise(session: Session, application: Case, incoming: Incoming, workflow: Workflow) -> str:
    """A reply bringing missing pieces, while the application allows it."""
    state = State(application.state)
    if state not in EDITABLE:
        workflow.send(
            session,
            Outgoing(
                "revision_not_editable", incoming.sender, case=application, answering=incoming
            ),
        )
        return f"revision of {application.public_id} refused: it is {state}"
    parsed = incoming.parsed
    form = parse_form(parsed.text, APPLICATION_KEYS)
    written = _case_id("", form.get("case", ""), "")
    about = find_case(session, written) if written else None
    problems = []
    refusal = _refusal(written, about)
    if refusal:
        problems.append(Problem("Case", f"{written}: no published case has this ID"))
        about = None
    _, told = participants.introduce(session, parsed, workflow.economies, workflow.clock)
    changed = _apply(application, form, about)
    workflow.engine.record(
        session,
        application,
        "revised",
        incoming.sender,
        incoming.record,
        note=", ".join(changed) or "nothing changed",
    )
    if state is State.PENDING_CONFIRMATION:
        submissions.ask_to_confirm(
            session, application.author.email, incoming, workflow, application
        )
        return f"revision of {application.public_id}: still waiting for confirmation"
    problems += [p for p in told.problems if p.field == "Economy"]
    return advance(session, application, incoming, workflow, problems)


def author_reply(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    """The applicant answered us: "withdraw" as the first word withdraws the
    application; anything else may bring what was missing."""
    application = session.get(Case, token.case_id)
    assert application is not None
    word, _ = review.split_reply(incoming.parsed.text)
    if word == "withdraw":
        return submissions.withdraw(session, application, incoming, workflow)
    return revise(session, application, incoming, workflow)


def decided(
    session: Session,
    application: Case,
    workflow: Workflow,
    action: review.Action,
    actor: str,
    reason: str,
) -> None:
    applicant = application.author.email
    context = {**_context(application, workflow), "reason": reason}
    if action is review.APPROVE:
        workflow.send(
            session, Outgoing("internship_approved", applicant, context, case=application)
        )
        review.send_to_focal_points(session, application, workflow)
    elif action is review.ACCEPT:
        _accepted(session, application, workflow, context)
        if actor not in workflow.admins:
            review.tell_admins(session, application, workflow, "accepted", actor, reason)
    elif action is review.REJECT:
        by_host = actor not in workflow.admins
        workflow.send(
            session,
            Outgoing(
                "internship_rejected",
                applicant,
                {**context, "by_host": by_host},
                case=application,
            ),
        )
        if by_host:
            review.tell_admins(session, application, workflow, "rejected", actor, reason)


def _accepted(
    session: Session, application: Case, workflow: Workflow, context: dict[str, object]
) -> None:
    funding, why = _funding(session, application, workflow)
    application.funding = funding
    workflow.engine.record(
        session, application, "funding", "mailflow", None, note=f"{funding}: {why}"
    )
    workflow.send(
        session,
        Outgoing(
            "internship_accepted",
            application.author.email,
            {**context, "funding": funding, "funding_reason": why},
            case=application,
        ),
    )
    tell_case_author(
        session,
        workflow,
        "internship_news",
        application,
        {**context, "preferred_dates": application.preferred_dates},
    )


def _funding(session: Session, application: Case, workflow: Workflow) -> tuple[str, str]:
    """Funded or self-funded, and why, in words for the applicant."""
    economy = workflow.economies.get(application.economy) if application.economy else None
    cap = workflow.settings.internships.funded_cap
    if economy is None or not economy.travel_eligible:
        name = economy.name if economy else "Your economy"
        return "self_funded", f"{name} is not one of the economies eligible for travel funding."
    taken = take_number_below(session, FUNDED_PLACES, cap)
    if taken is None:
        return "self_funded", f"All {cap} funded places are already taken."
    return (
        "funded",
        f"{economy.name} is eligible for travel funding and a funded place was free "
        f"({taken} of {cap} now taken).",
    )


def _context(application: Case, workflow: Workflow) -> dict[str, object]:
    about = application.about
    host = review.deciding_economy(application)
    return {
        "about": about,
        "about_url": case_url(about, workflow) if about else "",
        "host": workflow.economies.get(host) if host else None,
        "economy": workflow.economies.get(application.economy) if application.economy else None,
    }


def _case_id(subject: str, field: str, text: str) -> str:
    """The published case applied for: the subject (the case page's link
    fills it), then a ``Case:`` line, then anywhere in the text."""
    for place in (subject, field, text):
        match = _CASE_ID.search(place)
        if match:
            return match[1].upper()
    return ""


def _own_application(session: Session, incoming: Incoming) -> Case | None:
    match = _OWN_ID.search(incoming.parsed.subject)
    return find_own_case(session, match[1], incoming.sender) if match else None
