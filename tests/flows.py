"""The review loop as people do it, for the tests that need a case moved
along: people click the mailto links of the review emails (parsed with
urllib, exactly as a mail client would) or reply."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from conftest import Client, Mailbox, body_html, body_text, wait_until
from mails import FORM, address, message, raw_mail, reply, submission
from sqlalchemy import func, select

from mailflow.app import App
from mailflow.store.models import Case, InboundMessage, OutboxMessage, Participant

ANA, ADMIN = "ana@example.org", "admin@mailflow.localhost"
FOCAL, FOCAL2 = "focal.cl@example.org", "focal2.cl@example.org"


def state(app: App, public_id: str = "BP-2026-0001") -> str:
    def settled() -> str | None:
        # The spool first: a message leaves it only after its transaction
        # committed, so with the spool empty the state read next is final.
        if app.spool.pending() or any(app.spool.cur.iterdir()):
            return None
        with app.database.transaction() as session:
            case = session.scalar(select(Case).where(Case.public_id == public_id))
            return None if case is None else case.state

    return str(wait_until(settled, what="the case to settle"))


def links(mail: EmailMessage) -> dict[str, str]:
    """Button label -> mailto URL, from the HTML part."""
    found = re.findall(r'<a href="(mailto:[^"]+)"[^>]*>([^<]+)</a>', body_html(mail))
    return {label: url.replace("&amp;", "&") for url, label in found}


def click(client: Client, mail: EmailMessage, label: str, sender: str, reason: str = "") -> None:
    """Open the link in a mail client, type a reason, press Send."""
    url = urlsplit(links(mail)[label])
    query = parse_qs(url.query)
    body = query["body"][0] + reason
    client.send(message(sender, unquote(url.path), query["subject"][0], body))


def submitted(client: Client, outbox: Mailbox, economy: str = "Chile") -> EmailMessage:
    """A confirmed submission; returns the administrator's review email."""
    client.send(submission(body=FORM.replace("Chile", economy)))
    client.send(reply(outbox.wait_for_mail("submission_confirm", ANA), ANA))
    return outbox.wait_for_mail("admin_review", ADMIN)


def published(client: Client, outbox: Mailbox, app: App, economy: str = "Chile") -> str:
    """A submission taken through review to the archive; returns its ID."""
    review = submitted(client, outbox, economy)
    click(client, review, "Approve", ADMIN)
    reviewers = FOCAL if economy == "Chile" else ADMIN
    endorse = outbox.wait_for_mail("focal_review", reviewers)
    click(client, endorse, "Endorse", reviewers)
    case_id = str(re.search(r"\[(\w\w-\d{4}-\d{4})\]", endorse["Subject"]).group(1))  # type: ignore[union-attr]
    assert state(app, case_id) == "published"
    return case_id


def processed(app: App, count: int) -> None:
    """Wait until ``count`` messages are committed and the spool is empty
    (a claimed message sits in cur/ until its transaction commits)."""

    def done() -> bool:
        with app.database.transaction() as session:
            finished = session.scalar(select(func.count(InboundMessage.id)))
        idle = not app.spool.pending() and not any(app.spool.cur.iterdir())
        return finished == count and idle

    wait_until(done, what=f"{count} processed message(s)")


def emails(app: App) -> list[tuple[str, str]]:
    """(recipient, template) of everything in the outbox, in order, sent or
    not yet: the maildir alone could miss an email still being sent."""
    with app.database.transaction() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [(r.recipient, r.template) for r in rows]


def answered_at_their_address(
    app: App, outbox: Mailbox, person: str, deliver: Callable[[bytes, str], object]
) -> None:
    """A submission from ``person`` whose From is raw UTF-8 (RFC 6532), then
    the reply to its confirmation, each handed to an ingress by ``deliver``
    (the bytes, the envelope recipient; the envelope sender is ``person``):
    the answers are written to exactly ``person``, who is registered, and
    the envelope sender is kept, under that address."""
    deliver(raw_mail(submission(sender=person), From=f"José <{person}>"), address("submit"))
    confirm = outbox.wait_for_mail("submission_confirm", person)
    assert confirm["To"] == person
    assert "Seed capital" in body_text(confirm)
    answer = reply(confirm, person)
    deliver(raw_mail(answer, From=person), answer["To"].addresses[0].addr_spec)
    assert outbox.wait_for_mail("submission_ack", person)["To"] == person
    outbox.wait_for_mail("admin_review", ADMIN)
    with app.database.transaction() as session:
        assert session.scalars(select(Participant.email)).all() == [person]
        assert session.scalars(select(Participant.name)).all() == ["José"]
        senders = session.scalars(select(InboundMessage.envelope_sender))
        assert senders.all() == [person, person]
        recipients = session.scalars(select(OutboxMessage.recipient))
        assert set(recipients) == {person, ADMIN}
