"""Loops and machine mail (issue 11): a matrix of robot mail sent to the
addresses that answer people. None of it gets an automatic reply and none
of it opens a case; each is kept with the rule that recognised it."""

from __future__ import annotations

import pytest
from conftest import Client, Mailbox, wait_until
from mails import address, submission
from sqlalchemy import func, select

from mailflow.app import App
from mailflow.store.models import Case, InboundMessage
from mailflow.triage import takes_no_replies

pytestmark = pytest.mark.torture


def report(kind: str) -> bytes:
    """A delivery status (bounce) or disposition (read receipt) report."""
    sender = "postmaster@example.org" if kind == "delivery-status" else "ana@example.org"
    return (
        f"From: {sender}\r\nTo: {address('submit')}\r\nSubject: Report\r\n"
        "Message-ID: <report-1@example.org>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={kind}; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nAn automatically generated report.\r\n"
        f"--b\r\nContent-Type: message/{kind}\r\n\r\nReporting-MTA: dns; mx.example.org\r\n"
        "--b--\r\n"
    ).encode()


# name -> (extra headers, envelope sender): robots as they are met.
MATRIX: dict[str, tuple[dict[str, str], str | None]] = {
    "auto-submitted auto-replied": ({"Auto-Submitted": "auto-replied"}, None),
    "auto-submitted auto-generated": ({"Auto-Submitted": "auto-generated"}, None),
    "auto-submitted auto-notified": ({"Auto-Submitted": "auto-notified"}, None),
    "precedence bulk": ({"Precedence": "bulk"}, None),
    "precedence junk": ({"Precedence": "junk"}, None),
    "precedence list": ({"Precedence": "list"}, None),
    "mailing list": ({"List-Id": "Members <members.example.org>"}, None),
    "our own X-Loop": ({"X-Loop": "mailflow@mailflow.localhost"}, None),
    "null return path": ({}, ""),
    "MAILER-DAEMON": ({}, "MAILER-DAEMON@example.org"),
    "Gmail vacation reply": (
        {"Auto-Submitted": "auto-replied", "Precedence": "bulk", "Subject": "Re: out of office"},
        None,
    ),
    "Outlook automatic reply": (
        {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
        None,
    ),
    "vacation(1) reply": ({"Precedence": "junk", "X-Autoreply": "yes"}, None),
    "X-Autorespond": ({"X-Autorespond": "Auto-reply"}, None),
}


def nothing_answered(app: App, outbox: Mailbox, sent: int) -> None:
    def settled() -> bool:
        with app.database.transaction() as session:
            kept = session.scalar(select(func.count()).select_from(InboundMessage))
        return kept == sent and not app.spool.pending() and not any(app.spool.cur.iterdir())

    wait_until(settled, what="every message processed")
    with app.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0
        outcomes = set(session.scalars(select(InboundMessage.outcome)))
    assert outcomes == {"ignored"}
    assert outbox.messages() == []


@pytest.mark.parametrize("robot", list(MATRIX))
def test_machine_mail_is_never_answered(
    robot: str, client: Client, outbox: Mailbox, app: App
) -> None:
    headers, envelope_sender = MATRIX[robot]
    extra = {name: value for name, value in headers.items() if name != "Subject"}
    mail = submission(subject=headers.get("Subject", "Seed capital"), headers=extra)
    help_mail = submission(headers=extra)
    help_mail.replace_header("To", address("help"))
    client.send(mail, sender=envelope_sender)
    client.send(help_mail, sender=envelope_sender, to=[address("help")])
    nothing_answered(app, outbox, 2)


# Senders that say they take no replies, with no robot header at all: an
# answer could only bounce (issue 19).
NO_REPLY_SENDERS = [
    "noreply@example.org",
    "no-reply@example.org",
    "no_reply@example.org",
    "No.Reply@example.org",
    "donotreply@example.org",
    "do-not-reply@example.org",
    "do_not_reply@example.org",
    "gmail-noreply@google.com",
    "calendar-noreply@google.com",
    "noreply-dmarc-support@google.com",
    "noreply+bp@example.org",
    "DoNotRespond@example.org",
]


@pytest.mark.parametrize("sender", NO_REPLY_SENDERS)
def test_no_reply_senders_are_never_answered(
    sender: str, client: Client, outbox: Mailbox, app: App
) -> None:
    """A submission and a help request from a no-reply address are kept and
    listed for the administrator, never answered."""
    mail = submission(sender=f"Notifications <{sender}>")
    help_mail = submission(sender=sender)
    help_mail.replace_header("To", address("help"))
    client.send(mail)
    client.send(help_mail, to=[address("help")])
    nothing_answered(app, outbox, 2)
    with app.database.transaction() as session:
        details = set(session.scalars(select(InboundMessage.detail)))
    assert details == {"ignored: a no-reply sender"}


@pytest.mark.parametrize(
    "sender",
    ["noreen@example.org", "tinoreply@example.org", "reply@example.org", "replies@example.org"],
)
def test_people_whose_address_merely_contains_reply_are_answered(sender: str) -> None:
    """The rule reads whole words of the local part, so people keep their answers."""
    assert not takes_no_replies(sender)


@pytest.mark.parametrize("sender", NO_REPLY_SENDERS)
def test_the_no_reply_rule_reads_the_local_part(sender: str) -> None:
    """Each no-reply address is recognised by its local part alone."""
    assert takes_no_replies(sender)
    assert not takes_no_replies("ana@" + sender.rpartition("@")[0] + ".example.org")


@pytest.mark.parametrize("kind", ["delivery-status", "disposition-notification"])
def test_reports_are_never_answered(kind: str, client: Client, outbox: Mailbox, app: App) -> None:
    client.send(report(kind), sender="ana@example.org", to=[address("submit")])
    nothing_answered(app, outbox, 1)


def test_our_own_mail_looping_back_is_never_answered(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """An email of ours, forwarded back by a robot that keeps the headers."""
    client.send(submission())  # an unregistered sender: one confirmation goes out
    ours = outbox.wait_for(1, "ana@example.org")[-1]
    assert ours["X-Loop"] == "mailflow@mailflow.localhost"
    del ours["Auto-Submitted"]  # a careless robot drops it, but keeps X-Loop
    del ours["From"]
    ours["From"] = "robot@example.org"
    ours.replace_header("To", address("help"))
    client.send(ours, sender="robot@example.org", to=[address("help")])
    wait_until(lambda: not app.spool.pending() and not any(app.spool.cur.iterdir()))
    with app.database.transaction() as session:
        last = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert last is not None and last.detail == "ignored: our own X-Loop"
    assert len(outbox.messages()) == 1
