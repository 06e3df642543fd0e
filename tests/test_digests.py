"""Subscribers and digests (SPEC section 6), over real SMTP and HTTP, on
SQLite and PostgreSQL: subscribe with one email and one reply, a digest
only when something is new, leave with one click; bounces; and no digest
twice after a SIGKILL in the middle of a fan-out."""

from __future__ import annotations

import email
import email.policy
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Client, Mailbox, body_text, headline, purpose, wait_until
from mails import message, reply, submission
from readers import READER, SUBSCRIBE, digest_send, subscribed
from sqlalchemy import func, select

from bench.seed import seed_published, seed_subscribers
from mailflow.app import App
from mailflow.cli import main
from mailflow.config import Settings
from mailflow.store.models import OutboxMessage, Subscriber

OTHER = "other@example.org"


@pytest.fixture
def config_text() -> str:
    """Fan-out batches of 100, so three batches need only 220 readers."""
    return "[digest]\nbatch = 100\n"


def subscriber(app: App, address: str = READER) -> Subscriber:
    with app.database.transaction() as session:
        found = session.scalar(select(Subscriber).where(Subscriber.email == address))
        assert found is not None
        return found


def digests(outbox: Mailbox, address: str = READER) -> list:  # type: ignore[type-arg]
    return [m for m in outbox.to(address) if m["Subject"].startswith("New in the archive")]


def test_subscribing_and_leaving_by_email(client: Client, outbox: Mailbox, app: App) -> None:
    welcome = subscribed(client, outbox)
    secret = subscriber(app).secret
    assert f"unsubscribe+{secret}@mailflow.localhost" in body_text(welcome)

    client.send(message(READER.upper(), SUBSCRIBE, "subscribe again", ""))  # harmless
    assert outbox.wait_for(3, READER)[-1]["Subject"] == "You are already subscribed"

    client.send(message(READER, "unsubscribe@mailflow.localhost", "stop", ""))
    assert outbox.wait_for(4, READER)[-1]["Subject"] == "You are unsubscribed"
    assert subscriber(app).left_at is not None

    # Subscribing again starts afresh, with the same one-step address.
    subscribed_again = subscribed(client, outbox)
    assert subscribed_again is not None and subscriber(app).left_at is None
    # Anyone holding the one-step address removes that subscriber at once;
    # the goodbye goes to the subscriber.
    client.send(message(OTHER, f"unsubscribe+{secret}@mailflow.localhost", "unsubscribe", ""))
    wait_until(lambda: subscriber(app).left_at is not None, what="the one-step unsubscribe")
    assert outbox.wait_for(7, READER)[-1]["Subject"] == "You are unsubscribed"
    assert outbox.to(OTHER) == []


def test_a_digest_holds_what_is_new_for_each_subscriber(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    subscribed(client, outbox)
    digest_send(settings)
    assert digests(outbox) == []  # nothing new: no email

    first = seed_published(app, 3, title=lambda n: f"Early case {n}")
    subscribed(client, outbox, OTHER)  # joins after the first three
    second = seed_published(app, 2, seed=7, title=lambda n: f"Later case {n}")
    digest_send(settings, "--dry-run")
    assert digests(outbox) == []
    digest_send(settings)

    (mine,) = digests(outbox)
    assert mine["Subject"] == "New in the archive: 5 cases"
    text = body_text(mine)
    for case_id in first + second:
        assert f"{settings.site.base_url}/cases/{case_id}/" in text
    (theirs,) = digests(outbox, OTHER)
    assert theirs["Subject"] == "New in the archive: 2 cases"
    assert all(case_id not in body_text(theirs) for case_id in first)

    secret = subscriber(app).secret
    assert mine["Return-Path"] == f"<bounces+{secret}@mailflow.localhost>"
    assert mine["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mine["List-Unsubscribe"] == (
        f"<mailto:unsubscribe+{secret}@mailflow.localhost?subject=unsubscribe>, "
        f"<{settings.site.base_url}/unsubscribe/?s={secret}>"
    )
    assert mine["Auto-Submitted"] == "auto-generated" and mine["Precedence"] == "bulk"

    digest_send(settings)  # nothing new since: nothing sent
    assert len(digests(outbox)) == 1
    (newest,) = seed_published(app, 1, seed=9, title=lambda _: "Newest case")
    digest_send(settings)
    latest = digests(outbox)[-1]
    assert latest["Subject"] == "New in the archive: 1 case" and newest in body_text(latest)


# RFC 2369 section 2 with RFC 8058: one or more angle-bracketed URIs
# separated by commas, folded only at whitespace; no encoded words.
_LIST_URIS = re.compile(
    r"^<([\x21-\x3b\x3d\x3f-\x7e]+)>(?:[ \t]*,[ \t]*<([\x21-\x3b\x3d\x3f-\x7e]+)>)*$"
)


def raw_header(raw: bytes, name: str) -> str:
    """The header's value as written on the wire, unfolded (RFC 5322
    section 2.2.3), read strictly: ASCII only, no decoding of any kind."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("ascii")
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", head)
    values = [
        line.split(":", 1)[1].strip()
        for line in unfolded.splitlines()
        if line.split(":", 1)[0].lower() == name.lower()
    ]
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


def list_unsubscribe_uris(value: str) -> list[str]:
    assert "=?" not in value
    assert _LIST_URIS.match(value), value
    return re.findall(r"<([^<>]*)>", value)


LONG_SITE = (
    "https://best-practices-and-experiences.micro-small-enterprises.example.org"
    "/archive/working-group-on-small-and-medium-enterprises"
)


@pytest.mark.parametrize(
    "config_text",
    ["", f'[site]\nbase_url = "{LONG_SITE}"\n'],
    ids=["default site", "long site address"],
)
def test_list_unsubscribe_is_raw_ascii_in_the_bytes_written(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    """The digest's List-Unsubscribe and List-Unsubscribe-Post are written
    as plain RFC 2369 / RFC 8058 values, never RFC 2047-encoded, even when
    the one-click address is longer than a line."""
    subscribed(client, outbox)
    seed_published(app, 1)
    digest_send(settings)
    wait_until(lambda: digests(outbox), what="the digest")
    [raw] = [
        path.read_bytes()
        for path in sorted((settings.outbound.maildir / "new").iterdir())
        if b"New in the archive" in path.read_bytes()
    ]
    secret = subscriber(app).secret
    assert list_unsubscribe_uris(raw_header(raw, "List-Unsubscribe")) == [
        f"mailto:unsubscribe+{secret}@mailflow.localhost?subject=unsubscribe",
        f"{settings.site.base_url}/unsubscribe/?s={secret}",
    ]
    assert raw_header(raw, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["List-Unsubscribe"] == raw_header(raw, "List-Unsubscribe")


def test_one_click_unsubscribe(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    subscribed(client, outbox)
    secret = subscriber(app).secret
    url = f"http://127.0.0.1:{settings.archive.http_port}/unsubscribe/?s={secret}"

    with urllib.request.urlopen(url, timeout=10) as page:  # a mail scanner's GET
        assert b"Press the button" in page.read()
    assert subscriber(app).left_at is None

    one_click = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST")
    with urllib.request.urlopen(one_click, timeout=10) as page:
        assert b"You are unsubscribed" in page.read()
    assert subscriber(app).left_at is not None
    assert outbox.wait_for(3, READER)[-1]["Subject"] == "You are unsubscribed"

    wrong = urllib.request.Request(url.replace(secret, "0" * 32), data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong, timeout=10)
    assert refused.value.code == 404
    refused.value.close()


def test_bounces_suspend_a_subscriber_and_the_summary_says_so(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    subscribed(client, outbox)
    secret = subscriber(app).secret
    bounces = f"bounces+{secret}@mailflow.localhost"
    sent_before = len(outbox.messages())

    def bounce(subject: str, text: str, sender: str = "") -> None:
        mail = message("MAILER-DAEMON@example.org", bounces, subject, text)
        client.send(mail, sender=sender, to=[bounces])

    # Neither an out-of-office reply nor a delay warning is a failure.
    client.send(message("boss@example.org", bounces, "Out of office", "Back on Monday."))
    bounce("Delayed Mail (still being retried)", "Action: delayed\nStatus: 4.4.1\n")
    for period in range(3):
        digest_send(settings)  # a new digest period each time
        bounce(f"Undelivered Mail Returned to Sender {period}", "Action: failed\nStatus: 5.1.1\n")
        bounce("Undelivered Mail (the same period again)", "Action: failed\nStatus: 5.1.1\n")
        wait_until(lambda: not app.spool.pending() and not any(app.spool.cur.iterdir()))
        assert subscriber(app).bounces == period + 1  # once per period
    wait_until(lambda: subscriber(app).suspended_at is not None, what="the suspension")
    assert len(outbox.messages()) == sent_before  # a bounce is never answered

    seed_published(app, 1)
    digest_send(settings)
    assert digests(outbox) == []  # suspended: no digest

    tomorrow = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(
        days=1
    )
    for moment in (tomorrow - timedelta(days=1), tomorrow):
        assert main(["tick", "--now", moment.isoformat(), "--config", str(settings.source)]) == 0
    summaries = [m for m in outbox.to("admin@mailflow.localhost") if "Daily summary" in headline(m)]
    assert summaries and READER in body_text(summaries[-1])


def test_machine_mail_to_the_one_step_address_still_unsubscribes(
    client: Client, outbox: Mailbox, app: App
) -> None:
    subscribed(client, outbox)
    leave = f"unsubscribe+{subscriber(app).secret}@mailflow.localhost"
    automatic = message(
        READER, leave, "unsubscribe", "", headers={"Auto-Submitted": "auto-generated"}
    )
    client.send(automatic)
    wait_until(lambda: subscriber(app).left_at is not None, what="the unsubscription")
    assert len(outbox.to(READER)) == 2  # no goodbye to machine mail


def test_a_submission_copied_to_the_bounce_address_is_still_a_submission(
    client: Client, outbox: Mailbox
) -> None:
    mail = submission()
    client.send(mail, to=["submit@mailflow.localhost", "bounces@mailflow.localhost"])
    confirm = outbox.wait_for_mail("submission_confirm", "ana@example.org")
    assert purpose(confirm) == "Please confirm your email address"


@pytest.mark.slow
def test_a_fan_out_killed_midway_sends_nobody_a_digest_twice(
    app: App, settings: Settings, outbox: Mailbox
) -> None:
    # Three batches of the fan-out (100 a transaction here): one committed
    # before the kill, one cut short by it, one not begun.
    readers = 220
    seed_subscribers(app, readers)
    seed_published(app, 2)
    command = [sys.executable, "-m", "mailflow", "digest", "send", "--config", str(settings.source)]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert run.stdout is not None
    first = run.stdout.readline()  # the first batch is committed
    assert b"digests written" in first
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    run.stdout.close()

    with app.database.transaction() as session:
        written = session.scalar(select(func.count()).where(OutboxMessage.template == "digest"))
    assert 0 < written < readers  # killed midway

    assert main(["tick", "--config", str(settings.source)]) == 0  # finishes the period
    digest_send(settings)  # and a new period, with nothing new
    with app.database.transaction() as session:
        per_reader = session.execute(
            select(OutboxMessage.recipient, func.count())
            .where(OutboxMessage.template == "digest")
            .group_by(OutboxMessage.recipient)
        ).all()
    assert len(per_reader) == readers
    assert {count for _, count in per_reader} == {1}


def test_participants_can_join_when_they_register(
    client: Client, outbox: Mailbox, app: App
) -> None:
    client.send(
        message(
            READER,
            "register@mailflow.localhost",
            "Register",
            "Name: Rosa Diaz\nEconomy: Peru\nOrganization: Coop\nDigests: yes\n",
        )
    )
    confirm = outbox.wait_for(1, READER)[-1]
    client.send(reply(confirm, READER))
    outbox.wait_for(2, READER)
    wait_until(lambda: subscriber(app).confirmed_at is not None, what="the subscription")
    assert subscriber(app).digest_from is not None
