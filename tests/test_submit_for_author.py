"""Submitting for someone else (SPEC section 3): an administrator's
submission with an ``Author:`` line. Each case waits for its author's yes,
by the real SMTP server, on SQLite and PostgreSQL."""

from __future__ import annotations

from conftest import Client, Mailbox, body_html, body_text, purpose
from flows import click, emails, links, processed, state
from mails import FORM, reply, submission
from sqlalchemy import func, select

from mailflow.app import App
from mailflow.store.models import Case, Participant

ADMIN = "admin@mailflow.localhost"
ROSA = "rosa@example.org"
ANA = "ana@example.org"
FOR_ROSA = FORM + "Author: Rosa Díaz <rosa@example.org>\n"


def case_row(app: App, public_id: str = "BP-2026-0001") -> tuple[str, str, str]:
    """(author's address, author's name, who the history says submitted it)."""
    with app.database.transaction() as session:
        case = session.scalar(select(Case).where(Case.public_id == public_id))
        assert case is not None
        submitted = next(e for e in case.events if e.event == "submitted")
        return case.author.email, case.author.name, submitted.actor


def test_an_administrator_submits_for_an_author_who_agrees_first(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """The case is the author's; they get one email asking their yes, the
    administrator hears that it waits for it, nothing is reviewed before,
    and their click sends it to the administrator's review."""
    client.send(submission(sender=f"Admin <{ADMIN}>", body=FOR_ROSA))
    ask = outbox.wait_for_mail("submission_confirm", ROSA)
    ack = outbox.wait_for_mail("submitted_for_author", ADMIN)
    assert ask["Subject"] == ack["Subject"] == "[BP-2026-0001] Seed capital for micro entrepreneurs"
    assert purpose(ask) == "Please agree to publish this under your name"
    text = body_text(ask)
    assert "Hello Rosa Díaz," in text and ADMIN in text
    assert "Nothing is published under your name without your yes." in text
    assert "subject=Agree%20BP-2026-0001" in links(ask)["I agree"]
    assert purpose(ack) == "Waiting for the author to agree"
    assert "Nothing is reviewed or published before they agree." in body_text(ack)
    assert case_row(app) == (ROSA, "Rosa Díaz", ADMIN)
    assert state(app) == "pending_confirmation"
    assert not outbox.of("admin_review")

    click(client, ask, "I agree", ROSA)
    review = outbox.wait_for_mail("admin_review", ADMIN)
    assert "Seed capital" in body_text(review)
    assert state(app) == "admin_review"
    assert purpose(outbox.wait_for_mail("submission_ack", ROSA)).startswith("We received")
    with app.database.transaction() as session:
        rosa = session.scalar(select(Participant).where(Participant.email == ROSA))
        assert rosa is not None and rosa.confirmed_at is not None  # her reply registered her


def test_a_registered_author_still_agrees_to_each_case(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Registered long ago is not a yes to this text: the case waits for
    the author's agreement; her own confirmation elsewhere does not release it."""
    client.send(submission(sender=f"Rosa Díaz <{ROSA}>", subject="Her own case"))
    client.send(reply(outbox.wait_for_mail("submission_confirm", ROSA), ROSA, "yes"))
    outbox.wait_for_mail("admin_review", ADMIN)

    client.send(submission(sender=ADMIN, subject="Export coaching", body=FOR_ROSA))
    ask = outbox.wait_for_mail("submission_confirm", ROSA, count=2)
    assert ask["Subject"] == "[BP-2026-0002] Export coaching"
    assert purpose(ask) == "Please agree to publish this under your name"
    assert state(app, "BP-2026-0002") == "pending_confirmation"
    assert len(outbox.of("admin_review", ADMIN)) == 1

    client.send(reply(ask, ROSA, "Yes"))  # a plain reply agrees too
    outbox.wait_for_mail("admin_review", ADMIN, count=2)
    assert state(app, "BP-2026-0002") == "admin_review"


def test_an_author_line_from_anyone_else_opens_nothing(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Only an administrator submits for someone else: anyone else is told
    so, with what to do; nothing is opened and the named person hears nothing.
    An Author: line naming the sender is simply their own submission."""
    client.send(submission(body=FOR_ROSA))
    refused = outbox.wait_for_mail("author_refused", ANA)
    assert refused["Subject"] == "Only an administrator can submit for someone else"
    assert "send it again without the Author: line" in body_text(refused)
    processed(app, 1)
    assert not outbox.to(ROSA)
    with app.database.transaction() as session:
        assert session.scalar(select(func.count(Case.id))) == 0

    client.send(submission(body=FORM + "Author: Ana Perez <ana@example.org>\n"))
    outbox.wait_for_mail("submission_confirm", ANA)
    assert case_row(app) == (ANA, "Ana Perez", ANA)


def test_an_administrators_unreadable_author_line_is_refused(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """An Author: line without an address opens nothing and says how to write it."""
    client.send(submission(sender=ADMIN, body=FORM + "Author: Rosa Díaz\n"))
    refused = outbox.wait_for_mail("author_refused", ADMIN)
    assert refused["Subject"] == "We could not read the Author: line"
    assert "Author: Full Name &lt;name@example.org&gt;" in body_html(refused)
    processed(app, 1)
    assert emails(app) == [(ADMIN, "author_refused")]
