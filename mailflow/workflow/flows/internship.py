"""Internship applications: mail to ``internship@``, to learn a published
case on the field (SPEC section 6).

An application is a case of its own (``IN-2026-0001``) about the published
one. Like a submission it waits for an unregistered sender to confirm, and
for the missing pieces (the case ID, Motivation, Preferred dates, the
applicant's economy), asked for in one reply. Then the administrators
approve or reject it, and the focal points of the host economy (the
published case's) accept or reject it, with the reminders and escalation
of any focal stage. On acceptance it is funded when the applicant's economy
is travel-eligible and a funded place is free: places are taken by one
conditional increment, so ``[internships].funded_cap`` holds however many
acceptances race. Then the host's focal points (else the administrators)
are handed the applicant, to introduce them to the host organization.

A participant registered through a comment has no economy: any later
message of theirs with an ``Economy:`` line completes the application that
waits for it (a reply; a message to ``internship@`` naming no case, or the
same case again; or to ``register@``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from mailflow.forms import parse_form
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case, Participant
from mailflow.store.queries import FUNDED_PLACES, case_named, incomplete_applications, own_case
from mailflow.triage import Incoming
from mailflow.vocab import Kind
from mailflow.words import in_every_language, pgettext
from mailflow.workflow import participants, publishing, reviewing, steps
from mailflow.workflow.context import Workflow
from mailflow.workflow.engine import take_number_below
from mailflow.workflow.fields import Problem
from mailflow.workflow.flow import ACCEPT, APPROVE, REJECT, Flow, Reviewers, Stage, Step, Taken
from mailflow.workflow.flows.comment import case_url, tell_case_author, unavailable
from mailflow.workflow.states import Event, State

# Motivation runs to the next key, as a submission's summary does, and is
# kept in the case's summary.
APPLICATION_KEYS = in_every_language(
    {
        # Translators: the ID of the published case an intern wants to learn.
        pgettext("field", "Case"): "case",
        "case id": "case",
        pgettext("field", "Motivation"): "summary",
        "why": "summary",
        pgettext("field", "Preferred dates"): "dates",
        "preferred date": "dates",
        "dates": "dates",
        "when": "dates",
        pgettext("field", "Organization"): "organization",
        "organisation": "organization",
    }
)
_CASE_ID = re.compile(r"\b((?:BP|EX)-\d{4}-\d{4})\b", re.IGNORECASE)
_OWN_ID = re.compile(r"\b(IN-\d{4}-\d{4})\b", re.IGNORECASE)


def build() -> Flow:
    return Flow(
        name="internship",
        kinds=(Kind.INTERNSHIP,),
        stages=(
            Stage(
                "admin",
                State.ADMIN_REVIEW,
                Reviewers.ADMINS,
                (APPROVE, REJECT),
                "internship_review",
            ),
            Stage(
                "host", State.HOST_REVIEW, Reviewers.FOCAL_POINTS, (ACCEPT, REJECT), "host_review"
            ),
        ),
        done=State.ACCEPTED,
        effects={
            Event.CONFIRMED: (steps.go_on,),
            Event.COMPLETED: (steps.tell_author("internship_received", reply="case", answer=True),),
            Event.APPROVED: (steps.tell_author("internship_approved"),),
            Event.ACCEPTED: (
                fund_and_introduce,
                hand_over,
                steps.tell_admins("accepted", unless_theirs=True),
            ),
            Event.REJECTED: (
                steps.tell_author("internship_rejected"),
                steps.tell_admins("rejected", unless_theirs=True),
            ),
            Event.WITHDRAWN: (steps.withdrawn,),
        },
        missing=missing,
        take=take,
        context=context,
        incomplete_mail="internship_incomplete",
        revisable=False,
    )


def handle_internship(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    parsed = incoming.parsed
    own = _own_application(session, incoming)
    if own is not None:
        return steps.revise(session, own, incoming, workflow)
    form = parse_form(parsed.text, APPLICATION_KEYS)
    written = _case_id(parsed.subject, form.get("case", ""), parsed.text)
    waiting = _waiting_application(session, incoming.sender, written)
    if waiting is not None:
        return steps.revise(session, waiting, incoming, workflow)
    about = case_named(session, written) if written else None
    refusal = unavailable(about) if written else ""  # none named yet: only a missing piece
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
    application = steps.open_case(session, workflow, incoming, applicant, Kind.INTERNSHIP)
    _apply(application, form, about)
    application.economy = told.economy or None
    application.organization = application.organization or applicant.organization
    economy_problems = [p for p in told.problems if p.field == "economy"]
    return steps.begin(session, application, workflow, incoming, economy_problems)


def _apply(application: Case, form: dict[str, str], about: Case | None) -> list[str]:
    """Take what the form says; returns the names of what changed."""
    changed = []
    if about is not None and application.about_id != about.id:
        application.about = about
        application.title = about.title
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


def resume_applications(
    session: Session, applicant: Participant, incoming: Incoming, workflow: Workflow
) -> str:
    """The applicant told us their economy in a message to another address
    (``register@``): an incomplete application that lacked only that goes
    on. One that still lacks more keeps waiting for the reply it asked for."""
    ready = [
        application
        for application in incomplete_applications(session, applicant.email)
        if not missing(application, workflow)
    ]
    outcomes = [
        steps.advance(session, application, workflow, incoming, []) for application in ready
    ]
    return "; ".join(outcomes)


def missing(application: Case, workflow: Workflow) -> list[Problem]:
    # The applicant's economy, when no message named it, is their registered
    # one: known only once they confirmed.
    application.economy = application.economy or application.author.economy or None
    wanted = {
        "case": application.about,
        "motivation": application.summary,
        "dates": application.preferred_dates,
        "economy": application.economy,
    }
    return [Problem(field) for field, value in wanted.items() if not value]


def take(session: Session, application: Case, incoming: Incoming, workflow: Workflow) -> Taken:
    """A reply bringing missing pieces: the case, motivation, dates, and
    the applicant's economy (given in any later message, SPEC section 6)."""
    parsed = incoming.parsed
    form = parse_form(parsed.text, APPLICATION_KEYS)
    written = _case_id("", form.get("case", ""), "")
    about = case_named(session, written) if written else None
    problems = []
    if written and unavailable(about):
        problems.append(Problem("case", "no_published_case", written))
        about = None
    _, told = participants.introduce(session, parsed, workflow.economies, workflow.clock)
    changed = _apply(application, form, about)
    if told.economy and application.economy != told.economy:
        application.economy = told.economy
        changed.append("economy")
    problems += [p for p in told.problems if p.field == "economy"]
    return Taken(changed, problems)


def fund_and_introduce(step: Step) -> None:
    """Funded or self-funded; the applicant told who will contact them (a
    reply reaches the administrator, should nobody write), and the case's
    author told."""
    session, application, workflow = step.session, step.case, step.workflow
    funding, why, taken = _funding(session, application, workflow)
    application.funding = funding
    workflow.engine.record(
        session, application, "funding", "mailflow", None, note=f"{funding}: {why}"
    )
    if funding == "funded":
        publishing.changed(session, application, workflow)  # the guide's places left
    values = {**reviewing.case_values(application, workflow), "reason": step.reason}
    contact_days = workflow.settings.internships.contact_days
    workflow.send(
        session,
        Outgoing(
            "internship_accepted",
            application.author.email,
            {
                **values,
                "funding": funding,
                "funding_reason": why,
                "funded_taken": taken,
                "contacts": introducers(application, workflow),
                "no_focal_point": not reviewing.has_focal_point(application, workflow),
                "contact_days": contact_days,
                "write_after": workflow.clock.now() + timedelta(days=contact_days),
            },
            case=application,
            reply_to=workflow.admins[0],
        ),
    )
    tell_case_author(
        session,
        workflow,
        "internship_news",
        application,
        {**values, "preferred_dates": application.preferred_dates},
    )


def hand_over(step: Step) -> None:
    """The host economy's focal points (none: the administrators) get the
    applicant's contact and the task of introducing them to the host
    organization. The applicant is the Reply-To, so that a plain reply is
    the introduction; the administrators heard of the acceptance already,
    or made it."""
    session, application, workflow = step.session, step.case, step.workflow
    tasked = introducers(application, workflow)
    values = {
        **reviewing.case_values(application, workflow),
        "no_focal_point": not reviewing.has_focal_point(application, workflow),
        "contact_days": workflow.settings.internships.contact_days,
    }
    for person in tasked:
        workflow.send(
            session,
            Outgoing(
                "internship_handover",
                person,
                values,
                case=application,
                reply_to=application.author.email,
            ),
        )
    workflow.engine.record(
        session, application, "handed_over", "mailflow", None, note=", ".join(tasked)
    )


def introducers(application: Case, workflow: Workflow) -> list[str]:
    """Who introduces an accepted applicant to the host organization: the
    host economy's focal points, else the administrators."""
    return reviewing.focal_points(application, workflow) or workflow.admins


def _funding(session: Session, application: Case, workflow: Workflow) -> tuple[str, str, int]:
    """Funded or self-funded, why (``not_eligible``, ``cap_reached``,
    ``place_free``), and how many funded places are taken now."""
    economy = workflow.economies.get(application.economy) if application.economy else None
    if economy is None or not economy.travel_eligible:
        return "self_funded", "not_eligible", 0
    taken = take_number_below(session, FUNDED_PLACES, workflow.settings.internships.funded_cap)
    if taken is None:
        return "self_funded", "cap_reached", 0
    return "funded", "place_free", taken


def context(application: Case, workflow: Workflow) -> dict[str, Any]:
    about = application.about
    host = reviewing.deciding_economy(application)
    return {
        "about": about,
        "about_url": case_url(about, workflow) if about else "",
        "host": workflow.economies.get(host) if host else None,
        "applicant": application.author,
        "funded_cap": workflow.settings.internships.funded_cap,
    }


def _case_id(subject: str, field: str, text: str) -> str:
    """The published case applied for: the subject (the case page's link
    fills it), then a ``Case:`` line, then anywhere in the text."""
    for place in (subject, field, text):
        match = _CASE_ID.search(place)
        if match:
            return match[1].upper()
    return ""


def _waiting_application(session: Session, sender: str, written: str) -> Case | None:
    """The sender's incomplete application that this message completes,
    reply or not: the newest, when it names no case (an ``Economy:`` line
    alone, most often); else one about the case it names (the case page's
    link used again), which it must not duplicate."""
    for application in incomplete_applications(session, sender):
        if not written or (application.about and application.about.public_id == written):
            return application
    return None


def _own_application(session: Session, incoming: Incoming) -> Case | None:
    match = _OWN_ID.search(incoming.parsed.subject)
    return own_case(session, match[1], incoming.sender) if match else None
