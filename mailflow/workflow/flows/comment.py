"""Comments: mail to ``comment+<CASE-ID>@``, an opinion on a published case
(SPEC section 6).

A comment is a case of its own (``CM-2026-0001``) about the published one,
so it has a history, tokens and `mailflow case` like any other. The text
kept is what the person wrote, without quoted text, signatures or mail
client boilerplate (the raw message stays with the inbound record). An
unregistered sender confirms their address first. With
``[comments].moderation`` the administrators approve or reject it by the
same action links as submissions; without, it has no reviewer stage and is
shown at once. An approved comment is shown on the case's page (name and
economy, never the address), goes into the next digest, and the case's
author is told.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mailflow.digest import digests
from mailflow.forms import comment_text
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case
from mailflow.store.queries import case_named
from mailflow.triage import Incoming
from mailflow.vocab import Kind
from mailflow.workflow import participants, publishing, steps
from mailflow.workflow.context import Workflow
from mailflow.workflow.fields import Problem
from mailflow.workflow.flow import (
    APPROVE,
    REJECT,
    Effect,
    EffectKey,
    Flow,
    Reviewers,
    Stage,
    Step,
)
from mailflow.workflow.states import Event, State

MAX_CHARS = 5000  # a comment, not an essay: the document is for that
MODERATION = Stage(
    "admin", State.ADMIN_REVIEW, Reviewers.ADMINS, (APPROVE, REJECT), "comment_review"
)


def build(moderation: bool) -> Flow:
    """With moderation, the administrators approve each comment; without,
    a comment has no stage and is shown as soon as it is complete."""
    if moderation:
        stages: tuple[Stage, ...] = (MODERATION,)
        completed: tuple[Effect, ...] = (
            steps.tell_author("comment_received", reply="case", answer=True),
        )
        decided: dict[EffectKey, tuple[Effect, ...]] = {
            Event.APPROVED: (show,),
            Event.REJECTED: (steps.tell_author("comment_rejected"),),
        }
    else:
        stages, completed, decided = (), (shown_unmoderated,), {}
    return Flow(
        name="comment",
        kinds=(Kind.COMMENT,),
        stages=stages,
        done=State.PUBLISHED,
        effects={
            Event.CONFIRMED: (steps.go_on,),
            Event.COMPLETED: completed,
            **decided,
            Event.UNPUBLISHED: (its_page_changed,),
            Event.REPUBLISHED: (its_page_changed,),
            Event.WITHDRAWN: (steps.withdrawn,),
        },
        missing=missing,
        take=None,  # a comment cannot be edited; a new one can be sent
        context=context,
        revisable=False,
        publishes=True,
    )


def handle_comment(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    assert incoming.destination is not None
    written = incoming.destination.tag.upper()
    about = case_named(session, written) if written else None
    text = comment_text(incoming.parsed.text)
    refusal = _refusal(about, text)
    if refusal:
        workflow.send(
            session,
            Outgoing(
                "comment_refused",
                incoming.sender,
                {"reason": refusal, "case_id": written[:40], "max_chars": MAX_CHARS},
                answering=incoming,
            ),
        )
        return f"comment refused: {refusal.replace('_', ' ')} ({written[:40] or 'no case ID'})"
    assert about is not None
    author = participants.find_or_add(session, incoming.sender, workflow.clock)
    participants.learn(author, name=incoming.parsed.sender_name, economy=None, organization=None)
    comment = steps.open_case(session, workflow, incoming, author, Kind.COMMENT)
    comment.about = about
    comment.title = about.title
    comment.summary = text
    comment.economy = author.economy or None
    return steps.begin(session, comment, workflow, incoming, [])


def unavailable(about: Case | None) -> str:
    """Why a comment or an application cannot be about this case, or "":
    only published best practices and experiences take them."""
    if about is None or not Kind(about.kind or Kind.BEST_PRACTICE).is_submission:
        return "unknown_case"
    if about.state != State.PUBLISHED:
        return "not_published"
    return ""


def _refusal(about: Case | None, text: str) -> str:
    if reason := unavailable(about):
        return reason
    if not text.strip():
        return "empty"
    if len(text) > MAX_CHARS:
        return "too_long"
    return ""


def missing(comment: Case, workflow: Workflow) -> list[Problem]:
    return []  # an empty comment is refused when it arrives


def context(comment: Case, workflow: Workflow) -> dict[str, Any]:
    about = comment.about
    assert about is not None
    return {"about": about, "about_url": case_url(about, workflow), "commenter": comment.author}


def show(step: Step) -> None:
    """On the case's page, and the commenter and the case's author told."""
    session, comment, workflow = step.session, step.case, step.workflow
    about = comment.about
    assert about is not None
    # Shown from now: stamped only once no digest period can be starting.
    digests.hold_period_start(session)
    comment.state_since = workflow.clock.now()
    publishing.changed(session, about, workflow)
    steps.tell_author("comment_published")(step)
    if about.author.email != comment.author.email:
        tell_case_author(
            session,
            workflow,
            "case_commented",
            comment,
            {**context(comment, workflow), "text": comment.summary},
        )


def shown_unmoderated(step: Step) -> None:
    step.workflow.engine.record(
        step.session, step.case, "approved", "mailflow", None, note="moderation is off"
    )
    show(step)


def its_page_changed(step: Step) -> None:
    """The comment leaves its case's page, or comes back to it."""
    assert step.case.about is not None
    publishing.changed(step.session, step.case.about, step.workflow)


def tell_case_author(
    session: Session,
    workflow: Workflow,
    template: str,
    about_it: Case,
    context: dict[str, object],
) -> None:
    """The author of a published case hears of a comment or an accepted
    internship on it: who (name and economy, as the site shows them)."""
    about = about_it.about
    assert about is not None
    economy = workflow.economies.get(about_it.economy) if about_it.economy else None
    person = {
        "person_name": about_it.author.name,
        "person_economy": economy.name if economy else "",
    }
    workflow.send(
        session, Outgoing(template, about.author.email, {**context, **person}, case=about)
    )


def case_url(case: Case, workflow: Workflow) -> str:
    return f"{workflow.settings.site.base_url.rstrip('/')}/cases/{case.public_id}/"
