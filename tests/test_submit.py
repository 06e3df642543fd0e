"""Submitting by email, end to end: real SMTP into the running service, the
real outbound maildir, on SQLite and PostgreSQL (SPEC sections 3 and 7)."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

import pytest
from conftest import Client, Mailbox, body_html, body_text, purpose
from flows import emails, processed
from mails import FORM, PDF, address, message, reply, submission
from sqlalchemy import select

from mailflow.app import App
from mailflow.store.models import Case, InboundMessage, Participant

ANA = "ana@example.org"
ADMIN = "admin@mailflow.localhost"


def states(app: App) -> dict[str, str]:
    with app.database.transaction() as session:
        return {c.public_id: c.state for c in session.scalars(select(Case))}


def register(client: Client, outbox: Mailbox, sender: str = f"Ana Perez <{ANA}>") -> None:
    client.send(
        message(sender, address("register"), "Register", "Economy: Chile\nOrganization: SERCOTEC\n")
    )
    confirm = outbox.wait_for(1, ANA)[-1]
    client.send(reply(confirm, sender, "yes"))
    outbox.wait_for(2, ANA)


def test_registration_is_double_opt_in(client: Client, outbox: Mailbox, app: App) -> None:
    """register@ with the form gets a confirmation; replying to it registers
    the From address and a welcome says so."""
    client.send(
        message(
            "Ana Perez <ana@example.org>",
            address("register"),
            "Register me",
            "Economy: Viet Nam\nOrganization: Hanoi SME Centre\n",
        )
    )
    [confirm] = outbox.wait_for(1, ANA)
    assert confirm["Subject"] == "Please confirm your registration"
    assert confirm["Reply-To"].startswith("actions+")
    assert "mailto:actions+" in body_html(confirm)
    with app.database.transaction() as session:
        ana = session.scalar(select(Participant).where(Participant.email == ANA))
        assert ana is not None and ana.confirmed_at is None
        assert (ana.name, ana.economy) == ("Ana Perez", "VN")

    client.send(reply(confirm, "Ana Perez <ana@example.org>", "yes"))
    welcome = outbox.wait_for(2, ANA)[-1]
    assert welcome["Subject"] == "You are registered"
    assert "you are registered" in body_text(welcome)
    with app.database.transaction() as session:
        ana = session.scalar(select(Participant).where(Participant.email == ANA))
        assert ana is not None and ana.confirmed_at is not None


def test_registration_names_what_is_missing(client: Client, outbox: Mailbox) -> None:
    """An unrecognised economy is named, with the accepted values."""
    client.send(message(ANA, address("register"), "Register", "Economy: Atlantis\n"))
    [answer] = outbox.wait_for(1, ANA)
    text = body_text(answer)
    assert 'Economy: we could not recognise "Atlantis"' in text
    assert "Viet Nam" in text and "Organization: is missing" in text
    assert answer["Reply-To"] == address("register")


def test_unregistered_sender_confirms_then_case_goes_to_the_administrator(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """The README's walk-through: the submission waits for a confirmation;
    confirming acknowledges it and sends the review email with the document."""
    client.send(submission())
    [confirm] = outbox.wait_for(1, ANA)
    assert purpose(confirm) == "Please confirm your email address"
    assert confirm["Auto-Submitted"] == "auto-replied"
    assert states(app) == {"BP-2026-0001": "pending_confirmation"}
    assert not outbox.to(ADMIN)

    client.send(reply(confirm, "Ana Perez <ana@example.org>"))
    ack = outbox.wait_for(2, ANA)[-1]
    [review] = outbox.wait_for(1, ADMIN)
    assert purpose(ack) == "We received your submission"
    assert "BP-2026-0001" in body_text(ack) and "you are registered" in body_text(ack)
    assert purpose(review) == "Please review: Seed capital for micro entrepreneurs"
    assert review["Auto-Submitted"] == "auto-generated"
    [document] = list(review.iter_attachments())
    assert document.get_filename() == "seed_capital.pdf"
    assert document.get_content() == PDF
    assert "Access to Financial Services" in body_text(review)
    assert states(app) == {"BP-2026-0001": "admin_review"}


def test_registered_sender_gets_the_acknowledgement_at_once(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """A registered participant needs no confirmation; economy and
    organization default to what they registered with."""
    register(client, outbox)
    body = "Kind: experience\nPriority area: 2\nSummary: What we learnt.\n"
    client.send(submission(subject="Mobile payments for market stalls", body=body))
    ack = outbox.wait_for(3, ANA)[-1]
    assert purpose(ack) == "We received your submission"
    assert ack["In-Reply-To"]
    outbox.wait_for(1, ADMIN)
    assert states(app) == {"EX-2026-0001": "admin_review"}


def test_the_outbound_maildir_ends_its_lines_as_a_maildir_does(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Each file in the outbound maildir ends its lines in LF, as a local
    delivery agent writes them, so a mail reader opening it shows no
    ``^M``; the review email's document comes through byte for byte."""
    register(client, outbox)
    client.send(submission(attachment=("seed.pdf", PDF, "application/pdf")))
    review = outbox.wait_for(1, ADMIN)[-1]
    outbox.wait_for(3, ANA)
    files = sorted((outbox.root / "new").iterdir())
    assert len(files) == 4  # confirmation, welcome, acknowledgement, review
    for path in files:
        text = path.read_bytes()
        assert b"\r" not in text and text.startswith(b"Return-Path: <")
    (document,) = [p for p in review.iter_attachments() if p.get_filename() == "seed.pdf"]
    assert document.get_content() == PDF


def test_an_author_without_a_name_is_shown_by_address_alone(
    client: Client, outbox: Mailbox
) -> None:
    """A sender whose From has no name: the review email names the author
    by address, with no blank where the name would be."""
    client.send(submission(sender=ANA))
    client.send(reply(outbox.wait_for(1, ANA)[-1], ANA, "yes"))
    review = outbox.wait_for(1, ADMIN)[-1]
    assert f"Author: <{ANA}>" in body_text(review)
    assert f"<td>&lt;{ANA}&gt;</td>" in body_html(review)


def test_a_form_without_a_kind_opens_a_case_that_asks_for_it(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """The case is opened with everything the form gives (its title, area,
    summary) and the author is asked only for the kind."""
    register(client, outbox)
    body = "Priority area: 2\nSummary: What we learnt.\n"
    client.send(submission(subject="Mobile payments for market stalls", body=body))
    incomplete = outbox.wait_for(3, ANA)[-1]
    assert incomplete["Subject"] == "[BP-2026-0001] Mobile payments for market stalls"
    assert "Kind: is missing" in " ".join(body_text(incomplete).split())
    assert "Priority area: is missing" not in " ".join(body_text(incomplete).split())
    assert states(app) == {"BP-2026-0001": "incomplete"}


def test_incomplete_submission_is_completed_by_a_reply(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Missing and unrecognised values and the missing document are listed in
    one reply; answering it with only the corrections completes the case."""
    register(client, outbox)
    client.send(
        submission(
            body="Kind: Best practice\nPriority area: Finance stuff\nSummary: Short.\n",
            attachment=("virus.exe", b"MZ\x90\x00\x03", "application/octet-stream"),
        )
    )
    incomplete = outbox.wait_for(3, ANA)[-1]
    text = body_text(incomplete)
    assert purpose(incomplete).startswith("Your submission: please add")
    assert 'Priority area: we could not recognise "Finance stuff"' in text
    assert "1 Access to Financial Services" in text
    assert "virus is not a PDF, DOCX, DOC, ODT, RTF or TXT file" in text
    assert "Economy" not in text  # taken from the registration
    assert states(app) == {"BP-2026-0001": "incomplete"}

    client.send(
        reply(
            incomplete, ANA, "Priority area: 1", attachment=("report.pdf", PDF, "application/pdf")
        )
    )
    ack = outbox.wait_for(4, ANA)[-1]
    assert purpose(ack) == "We received your submission"
    outbox.wait_for(1, ADMIN)
    assert states(app) == {"BP-2026-0001": "admin_review"}


def test_a_file_that_is_no_document_is_named_again_after_confirming(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """An unregistered sender's only file is not a document: the answer to
    the confirmation names that file again, as the confirmation request
    did, and never says that no file was attached (one was)."""
    not_a_pdf = ("practice.pdf", bytes(range(256)) * 8, "application/pdf")
    client.send(submission(attachment=not_a_pdf))
    confirm = outbox.wait_for(1, ANA)[-1]
    refused = "practice is not a PDF, DOCX, DOC, ODT, RTF or TXT file"
    assert refused in " ".join(body_text(confirm).split())
    client.send(reply(confirm, ANA, "yes"))
    said = " ".join(body_text(outbox.wait_for(2, ANA)[-1]).split())
    assert f"Document: is missing ({refused})" in said
    assert "no file was attached" not in said
    assert states(app) == {"BP-2026-0001": "incomplete"}


@pytest.mark.parametrize("config_text", ["[limits]\nmax_attachment_bytes = 2048\n"])
def test_a_document_too_large_stays_too_large_after_confirming(
    client: Client, outbox: Mailbox, app: App, config_text: str
) -> None:
    """A document over [limits].max_attachment_bytes, next to a file that is
    no document: after the confirmation the answer still says the document
    is too large, not that the other file is no document."""
    big = PDF.replace(b"%%EOF", b"%" + b"x" * 4096 + b"\n%%EOF")
    mail = submission(attachment=("big.pdf", big, "application/pdf"))
    mail.add_attachment(bytes(range(256)), "application", "octet-stream", filename="logo.xyz")
    client.send(mail)
    confirm = outbox.wait_for(1, ANA)[-1]
    assert "big.pdf is larger than" in " ".join(body_text(confirm).split())
    client.send(reply(confirm, ANA, "yes"))
    said = " ".join(body_text(outbox.wait_for(2, ANA)[-1]).split())
    assert "big.pdf is larger than" in said and "logo" not in said


def test_the_economies_to_choose_from_are_told_apart(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """An economy's name may hold a comma ("Hong Kong, China"): the list
    of economies to write one of is separated by semicolons, so that it
    cannot be read as "Hong Kong" and "China"."""
    register(client, outbox)
    client.send(
        submission(body="Kind: Best practice\nEconomy: Atlantis\nPriority area: 2\nSummary: S.\n")
    )
    said = " ".join(body_text(outbox.wait_for(3, ANA)[-1]).split())
    assert "Write one of: Australia; Brunei Darussalam; Canada; Chile; China;" in said
    assert "; Chinese Taipei; Hong Kong, China; Indonesia;" in said


def test_reply_by_case_id_in_subject_also_revises(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Writing to submit@ again with [CASE-ID] in the subject completes the case."""
    register(client, outbox)
    client.send(submission(attachment=None))
    outbox.wait_for(3, ANA)
    client.send(submission(subject="Re: [BP-2026-0001] the document", body="Here it is."))
    outbox.wait_for(4, ANA)
    assert states(app) == {"BP-2026-0001": "admin_review"}


def test_a_duplicate_message_changes_nothing(client: Client, outbox: Mailbox, app: App) -> None:
    """A byte-identical resend is one delivery; a different message that
    reuses the Message-ID is still processed."""
    first = submission()
    raw = first.as_bytes(policy=SMTP)
    client.send(raw, "ana@example.org", [address("submit")])
    client.send(raw, "ana@example.org", [address("submit")])
    processed(app, 1)
    assert emails(app) == [(ANA, "submission_confirm")]

    other = submission(subject="Another practice")
    del other["Message-ID"]
    other["Message-ID"] = first["Message-ID"]
    client.send(other)
    outbox.wait_for(2, ANA)
    assert sorted(states(app)) == ["BP-2026-0001", "BP-2026-0002"]


def test_no_reply_to_machines(client: Client, outbox: Mailbox, app: App) -> None:
    """Auto-submitted mail, list mail, bounces and our own mail are kept and
    never answered."""
    machines: list[EmailMessage] = [
        submission(headers={"Auto-Submitted": "auto-replied"}),
        submission(headers={"Precedence": "bulk"}),
        submission(sender="MAILER-DAEMON@example.org"),
        message(address("help"), address("help"), "loop?", "hello"),  # our own From
    ]
    for mail in machines:
        client.send(mail)
    client.send(submission(), sender="")  # null return path: a bounce
    processed(app, 5)
    assert emails(app) == []
    assert outbox.messages() == []
    with app.database.transaction() as session:
        outcomes = session.scalars(select(InboundMessage.outcome)).all()
    assert outcomes == ["ignored"] * 5
    assert states(app) == {}


def test_help_answers_with_the_form(client: Client, outbox: Mailbox) -> None:
    """help@ explains how it works, with the form, the areas and the economies
    (to an empty message: one with a question goes to a person)."""
    client.send(message(ANA, address("help"), "how?", ""))
    [answer] = outbox.wait_for(1, ANA)
    text = body_text(answer)
    assert "submit@mailflow.localhost" in text
    assert "Priority area: 1" in text and "Capacity Building" in text
    assert "Papua New Guinea" in " ".join(text.split())
    # Told apart: "Hong Kong, China" is one economy.
    assert "; Chinese Taipei; Hong Kong, China; Indonesia;" in " ".join(text.split())
    assert "; Chinese Taipei; Hong Kong, China; Indonesia;" in body_html(answer)
    assert "Organization: Your organization" in text and "Kind: Best practice" in text


def test_user_text_is_escaped_in_html(client: Client, outbox: Mailbox) -> None:
    """A title with markup reaches the administrator as text, not as HTML."""
    register(client, outbox)
    client.send(submission(subject="<script>alert(1)</script> & more"))
    [review] = outbox.wait_for(1, ADMIN)
    html = body_html(review)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html


def test_an_encoded_display_name_cannot_pose_as_the_sender(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """From: "admin@mailflow.localhost <" <eve@evil.org>, RFC 2047-encoded,
    is Eve: the address is read before the display name is decoded."""
    raw = (
        b"From: =?utf-8?q?admin=40mailflow=2Elocalhost_=3C?= <eve@evil.org>\r\n"
        b"To: help@mailflow.localhost\r\nSubject: hi\r\nMessage-ID: <spoof@evil.org>\r\n"
        b"\r\nhello\r\n"
    )
    client.send(raw, "eve@evil.org", [address("help")])
    processed(app, 1)
    assert sorted(emails(app)) == [
        (ADMIN, "question_forwarded"),
        ("eve@evil.org", "question_received"),
    ]


def test_each_of_our_addresses_in_one_message_is_served(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """A message to help@ and submit@ gets the help text and opens a case:
    both recipients heard 250, so neither may be dropped."""
    mail = submission()
    client.send(mail, to=[address("help"), address("submit")])
    processed(app, 1)
    assert sorted(emails(app)) == [(ANA, "help"), (ANA, "submission_confirm")]
    assert states(app) == {"BP-2026-0001": "pending_confirmation"}


def test_a_first_timer_with_one_mistake_is_done_in_two_emails(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """A new sender forgets the priority area: the one email that asks to
    confirm also says what to fix, and one reply with the line confirms
    their address and completes the case (SPEC section 3, step 1)."""
    client.send(submission(body=FORM.replace("Priority area: Access to Financial Services\n", "")))
    confirm = outbox.wait_for_mail("submission_confirm", ANA)
    said = " ".join(body_text(confirm).split())
    assert "Priority area: is missing" in said
    assert "Your reply confirms your address too." in said
    assert "Priority area" in body_html(confirm)

    client.send(reply(confirm, f"Ana Perez <{ANA}>", "Priority area: 2"))
    ack = outbox.wait_for_mail("submission_ack", ANA)
    assert "you are registered" in body_text(ack)
    assert states(app) == {"BP-2026-0001": "admin_review"}
    outbox.wait_for_mail("admin_review", ADMIN)
    with app.database.transaction() as session:
        case = session.scalar(select(Case))
        assert case is not None and case.area == 2
    # Two emails from the author, two answers: the confirmation and the ack.
    assert [template for to, template in emails(app) if to == ANA] == [
        "submission_confirm",
        "submission_ack",
    ]


def test_a_click_on_confirm_still_asks_for_what_is_missing(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """The Confirm link brings nothing to apply: the address is confirmed
    and the author hears, once, what is still to fix."""
    client.send(submission(body=FORM.replace("Priority area: Access to Financial Services\n", "")))
    confirm = outbox.wait_for_mail("submission_confirm", ANA)
    client.send(reply(confirm, f"Ana Perez <{ANA}>", "Yes, this is my address."))
    incomplete = outbox.wait_for_mail("submission_incomplete", ANA)
    assert "Priority area: is missing" in " ".join(body_text(incomplete).split())
    assert states(app) == {"BP-2026-0001": "incomplete"}
