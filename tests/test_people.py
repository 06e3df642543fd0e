"""Reaching a person (SPEC section 2, issue 19), over real SMTP on SQLite
and PostgreSQL: postmaster@ and abuse@ reach the administrators and are
never answered; a question to help@, or in reply to one of our emails about
a case, reaches an administrator whose answer goes straight to the person;
status@ lists the sender's cases; and every address we send from or ask
replies at is accepted by the running service."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import getaddresses

from conftest import Client, Mailbox, body_html, body_text, headline, purpose, wait_until
from flows import ADMIN, ANA, click, emails, processed, published, state, submitted
from mails import address, message, reply, submission

from mailflow.app import App
from mailflow.cli import main

BO, READER = "bo@example.org", "reader@example.org"


def test_postmaster_and_abuse_reach_the_administrators_and_are_never_answered(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """postmaster@ and abuse@ are accepted; each message, a person's or a
    bounce, is forwarded to the administrator with its sender as Reply-To,
    and nobody gets an automatic answer."""
    client.send(message(ANA, address("postmaster"), "Your server", "It refuses my mail."))
    client.send(message(ANA, address("abuse"), "Spam from you", "Received: from spammer"))
    bounce = message(
        "MAILER-DAEMON@example.org", address("postmaster"), "Undelivered Mail", "No such user"
    )
    client.send(bounce, sender="")  # the null return path of a delivery report
    processed(app, 3)
    forwards = outbox.wait_for(3, ADMIN)
    assert emails(app) == [(ADMIN, "mailbox_forwarded")] * 3
    assert outbox.to(ANA) == []
    by_subject = {str(m["Subject"]): m for m in forwards}
    to_postmaster = by_subject["Mail to postmaster@mailflow.localhost: Your server"]
    assert to_postmaster["Reply-To"] == ANA
    assert "It refuses my mail." in body_text(to_postmaster)
    assert "Press Reply to answer ana@example.org" in body_text(to_postmaster)
    assert "Message-ID:" in body_text(to_postmaster)  # the headers, as they came
    assert (
        "Spam from you" in by_subject["Mail to abuse@mailflow.localhost: Spam from you"]["Subject"]
    )
    assert "No such user" in body_text(
        by_subject["Mail to postmaster@mailflow.localhost: Undelivered Mail"]
    )


def test_a_question_to_help_reaches_a_person_who_answers_the_asker(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Free text to help@ goes to the administrator with the asker as
    Reply-To, so pressing Reply answers the asker; the asker is told once
    that a person will answer, not after every message of the conversation."""
    client.send(
        message(f"Ana Perez <{ANA}>", address("help"), "Economy", "How do I change my economy?")
    )
    [forward] = outbox.wait_for(1, ADMIN)
    assert forward["Reply-To"] == ANA
    assert forward["Subject"] == "Question from ana@example.org: Economy"
    assert "How do I change my economy?" in body_text(forward)
    assert "How do I change my economy?" in body_html(forward)
    answer = reply(forward, ADMIN, "Reply with Economy: and the new one.")
    assert [a for _, a in getaddresses([str(answer["To"])])] == [ANA]

    [told] = outbox.wait_for(1, ANA)
    assert told["Subject"] == "A person will answer you"
    assert told["Reply-To"] is None and "help@mailflow.localhost" in str(told["From"])

    client.send(reply(told, ANA, "Thank you. And can I add a second contact?"))
    outbox.wait_for(2, ADMIN)
    processed(app, 2)
    assert emails(app) == [
        (ADMIN, "question_forwarded"),
        (ANA, "question_received"),
        (ADMIN, "question_forwarded"),
    ]


def test_a_form_or_an_empty_mail_to_help_gets_the_help_text(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Mail to help@ with a line of the form, or with nothing in it, gets
    the automatic help; nobody is bothered with it."""
    client.send(message(ANA, address("help"), "help", "Economy: Chile\nHow does this work?"))
    client.send(message(BO, address("help"), "help", ""))
    processed(app, 2)
    assert sorted(emails(app)) == [(ANA, "help"), (BO, "help")]


def test_a_question_in_reply_to_an_acknowledgement_reaches_a_person(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """The author's reply to the acknowledgement, while the case is with
    the administrator, changes nothing and goes to the administrator as a
    question about that case; the author hears that a person will answer."""
    submitted(client, outbox)
    ack = outbox.wait_for(2, ANA)[-1]
    assert purpose(ack) == "We received your submission"
    client.send(reply(ack, ANA, "When will it be published?"))
    question = outbox.wait_for(2, ADMIN)[-1]
    assert purpose(question).startswith("Question from ana@example.org")
    assert question["Reply-To"] == ANA
    assert "BP-2026-0001" in body_text(question)
    assert "When will it be published?" in body_text(question)
    told = outbox.wait_for(3, ANA)[-1]
    assert purpose(told) == "A person will answer you"
    assert "We did not change case BP-2026-0001" in body_text(told)
    assert state(app) == "admin_review"


def test_a_reply_to_the_published_email_reaches_a_person(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """ "Your case is published" can be answered: the reply reaches the
    administrator as a question about the case, never a refusal."""
    case_id = published(client, outbox, app, economy="Peru")
    news = wait_until(
        lambda: [m for m in outbox.to(ANA) if "is published" in headline(m)],
        what="the author told of the publication",
    )[-1]
    assert str(news["Reply-To"]).startswith("actions+")
    client.send(reply(news, ANA, "Can I change the title now?"))
    question = wait_until(
        lambda: [m for m in outbox.to(ADMIN) if "Question from" in headline(m)],
        what="the question forwarded",
    )[-1]
    assert case_id in headline(question) and question["Reply-To"] == ANA
    assert state(app, case_id) == "published"


def test_status_lists_the_senders_cases(client: Client, outbox: Mailbox, app: App) -> None:
    """status@, or a reply whose first word is "status", answers with the
    sender's cases: ID, title, state, on whom it waits and since when."""
    submitted(client, outbox)
    ack = outbox.wait_for(2, ANA)[-1]
    client.send(message(ANA, address("status"), "status", ""))
    answer = outbox.wait_for(3, ANA)[-1]
    assert answer["Subject"] == "Where your cases stand"
    text = " ".join(body_text(answer).split())
    assert 'BP-2026-0001 "Seed capital for micro entrepreneurs"' in text
    assert "the administrator is checking it now" in text
    assert "waiting with the administrator" in text
    assert "To withdraw a case, reply" in text
    assert "BP-2026-0001" in body_html(answer)

    client.send(reply(ack, ANA, "status"))
    again = outbox.wait_for(4, ANA)[-1]
    assert again["Subject"].endswith("Where your cases stand")
    assert "waiting with the administrator" in body_text(again)
    assert state(app) == "admin_review"

    client.send(message(BO, address("status"), "status", ""))
    [none] = outbox.wait_for(1, BO)
    assert "We have no cases from bo@example.org" in " ".join(body_text(none).split())


def test_status_offers_to_withdraw_only_a_case_that_can_be(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """An author whose only case is published is not told how to withdraw
    it: a published case cannot be withdrawn (SPEC section 4)."""
    case_id = published(client, outbox, app, economy="Peru")
    before = len(outbox.to(ANA))
    client.send(message(ANA, address("status"), "status", ""))
    answer = outbox.wait_for(before + 1, ANA)[-1]
    text = " ".join(body_text(answer).split())
    assert case_id in text and "withdraw" not in text
    assert "withdraw" not in body_html(answer)


def test_an_earned_answer_comes_twice_an_hour_to_replies_and_always_otherwise(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """A confirmed participant's status request is answered however often
    it comes on its own (the cap meant for robots never withholds what a
    distinct message earns, SPEC section 7); to replies threaded under our
    emails, the same answer comes at most twice an hour, which is what
    stops a participant's robot that answers each of ours."""
    submitted(client, outbox)
    ack = outbox.wait_for_mail("submission_ack", ANA)
    # One after another, as a robot answering each of our emails sends
    # them. Replies handled in the same instant by two workers do not see
    # each other's answer before it commits: the cap breaks a loop, it is
    # not an exact count.
    for sent in range(3):
        client.send(reply(ack, ANA, "status"))
        processed(app, 3 + sent)
    assert emails(app).count((ANA, "status")) == 2
    for _ in range(3):
        client.send(message(ANA, address("status"), "status", ""))
    processed(app, 8)
    assert emails(app).count((ANA, "status")) == 5


def _senders_and_reply_tos(messages: list[EmailMessage]) -> set[str]:
    found: set[str] = set()
    for mail in messages:
        for header in ("From", "Reply-To"):
            found |= {a.lower() for _, a in getaddresses(mail.get_all(header, [])) if a}
    return found


def test_every_address_we_send_from_or_ask_replies_at_is_accepted(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Through the main flows (submission, confirmation, review,
    publication, rejection, digest subscription and a digest), every From
    and Reply-To of every email sent is accepted at RCPT by the running
    service: every email can be answered."""
    published(client, outbox, app, economy="Peru")
    client.send(submission(sender=f"Bo <{BO}>", subject="A second practice"))
    client.send(reply(outbox.wait_for(1, BO)[-1], BO))
    review = wait_until(
        lambda: [m for m in outbox.to(ADMIN) if "A second practice" in headline(m)],
        what="the second review",
    )[-1]
    click(client, review, "Reject", ADMIN, "Out of scope.")
    assert state(app, "BP-2026-0002") == "rejected"
    client.send(message(READER, address("subscribe"), "subscribe", ""))
    client.send(reply(outbox.wait_for(1, READER)[-1], READER))
    outbox.wait_for(2, READER)  # the welcome
    assert main(["digest", "send", "--config", str(app.settings.source)]) == 0

    addresses = _senders_and_reply_tos(outbox.messages())
    assert "help@mailflow.localhost" in addresses
    assert any(a.startswith("actions+") for a in addresses)
    with smtplib.SMTP(client.host, client.port, timeout=30) as smtp:
        smtp.ehlo()
        for each in sorted(addresses):
            smtp.mail("someone@example.org")
            code, text = smtp.rcpt(each)
            assert code == 250, f"{each} refused at RCPT: {code} {text!r}"
            smtp.rset()
