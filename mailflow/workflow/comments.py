"""Mail to ``comment+<CASE-ID>@``: an opinion on a published case (SPEC
section 6).

A comment is a case of its own (``CM-2026-0001``) about the published one,
so it has a history, tokens and `mailflow case` like any other. The text
kept is what the person wrote, without quoted text, signatures or mail
client boilerplate (the raw message stays with the inbound record). An
unregistered sender confirms their address first. With
``[comments].moderation`` the administrators approve or reject it by the
same action links as submissions; without, mailflow approves it at once.
An approved comment is shown on the case's page (name and economy, never
the address), goes into the next digest, and the case's author is told.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.forms import comment_text
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case, Token
from mailflow.triage import Incoming
from mailflow.vocab import Kind
from mailflow.workflow import digests, participants, publishing, review, submissions
from mailflow.workflow.context import Workflow
from mailflow.workflow.engine import find_case
from mailflow.workflow.states import Event, State

MAX_CHARS = 5000  # a comment, not an essay: the document is for that


def handle_comment(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    assert incoming.destination is not None
    written = incoming.destination.tag.upper()
    about = find_case(session, written) if written else None
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
    registered = author.confirmed_at is not None
    comment = workflow.engine.open_case(
        session,
        prefix=Kind.COMMENT.prefix,
        author=author,
        state=State.ADMIN_REVIEW if registered else State.PENDING_CONFIRMATION,
        message=incoming.record,
        thread_id=incoming.parsed.message_id,
    )
    comment.kind = Kind.COMMENT
    comment.about = about
    comment.title = f"Comment on {about.public_id}: {about.title}"[:500]
    comment.summary = text
    comment.economy = author.economy or None
    if not registered:
        submissions.ask_to_confirm(session, author.email, incoming, workflow, comment)
        return (
            f"comment {comment.public_id} on {about.public_id}: waiting for the sender to confirm"
        )
    return go_on(session, comment, incoming, workflow)


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


def go_on(
    session: Session,
    comment: Case,
    incoming: Incoming,
    workflow: Workflow,
    *,
    just_registered: bool = False,
) -> str:
    """A comment from a registered sender: to the administrators, or, with
    moderation off, onto the page at once."""
    about = comment.about
    assert about is not None
    if not workflow.settings.comments.moderation:
        workflow.engine.transition(
            session, comment, Event.APPROVED, actor="mailflow", note="moderation is off"
        )
        _show(session, comment, workflow)
        return f"comment {comment.public_id} on {about.public_id}: published (no moderation)"
    workflow.send(
        session,
        Outgoing(
            "comment_received",
            comment.author.email,
            _context(comment, workflow),
            case=comment,
            answering=incoming,
            reply_to=workflow.author_reply_to(session, comment),
        ),
    )
    economy = workflow.economies.get(comment.economy) if comment.economy else None
    review.request_review(
        session,
        comment,
        workflow,
        workflow.admins,
        "comment_review",
        {**_context(comment, workflow), "commenter": comment.author, "economy": economy},
    )
    return f"comment {comment.public_id} on {about.public_id}: waiting for the administrator"


def decided(
    session: Session,
    comment: Case,
    workflow: Workflow,
    action: review.Action,
    actor: str,
    reason: str,
) -> None:
    if action is review.APPROVE:
        _show(session, comment, workflow)
    elif action is review.REJECT:
        workflow.send(
            session,
            Outgoing(
                "comment_rejected",
                comment.author.email,
                {**_context(comment, workflow), "reason": reason},
                case=comment,
            ),
        )


def _show(session: Session, comment: Case, workflow: Workflow) -> None:
    """On the case's page, and the commenter and the case's author told."""
    about = comment.about
    assert about is not None
    # Shown from now: stamped only once no digest period can be starting.
    digests.hold_period_start(session)
    comment.state_since = workflow.clock.now()
    publishing.changed(session, about, workflow)
    context = _context(comment, workflow)
    workflow.send(
        session, Outgoing("comment_published", comment.author.email, context, case=comment)
    )
    if about.author.email != comment.author.email:
        tell_case_author(
            session, workflow, "case_commented", comment, {**context, "text": comment.summary}
        )


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
        "person_name": about_it.author.name or "A participant",
        "person_economy": economy.name if economy else "",
    }
    workflow.send(
        session, Outgoing(template, about.author.email, {**context, **person}, case=about)
    )


def author_reply(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    """The commenter answered us: "withdraw" takes the comment back while
    it waits; a comment cannot be edited (a new one can be sent)."""
    comment = session.get(Case, token.case_id)
    assert comment is not None
    word, _ = review.split_reply(incoming.parsed.text)
    if word == "withdraw":
        return submissions.withdraw(session, comment, incoming, workflow)
    workflow.send(
        session,
        Outgoing("revision_not_editable", incoming.sender, case=comment, answering=incoming),
    )
    return f"{comment.public_id}: a reply to a comment changes nothing"


def _context(comment: Case, workflow: Workflow) -> dict[str, object]:
    about = comment.about
    assert about is not None
    return {"about": about, "about_url": case_url(about, workflow)}


def case_url(case: Case, workflow: Workflow) -> str:
    return f"{workflow.settings.site.base_url.rstrip('/')}/cases/{case.public_id}/"
