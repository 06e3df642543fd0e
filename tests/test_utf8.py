"""Raw UTF-8 headers (RFC 6532) and addresses beyond ASCII (SMTPUTF8,
RFC 6531) are read and answered correctly, and no text anywhere shows a
replacement character (SPEC section 3). Over real SMTP and LMTP into the
running service and through `mailflow ingest` in its own process, on SQLite
and PostgreSQL; a real local SMTP server stands in for a relay without
SMTPUTF8. (The IMAP ingress's case is in test_imap.py, with its Dovecot.)"""

from __future__ import annotations

import smtplib
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import html5lib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpServer
from aiosmtpd.smtp import Envelope, Session
from conftest import Client, Mailbox, body_html, body_text, free_port, wait_until
from flows import ADMIN, FOCAL, answered_at_their_address, click, state
from mails import DOMAIN, FORM, PDF, address, message, raw_mail, reply, submission
from sqlalchemy import select

from mailflow.app import App, Service, build
from mailflow.cli import main
from mailflow.config import Settings, load_settings
from mailflow.parse import parse_message
from mailflow.store.models import Case, OutboxMessage, Participant

TITLE = "Hợp tác xã của chúng tôi"
NAME = "Juan Pérez"
JUAN = "juan@example.vn"
READER = "reader@example.org"
REPLACEMENT = "\ufffd"


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'


def send_raw(client: Client, raw: bytes, sender: str, to: str) -> None:
    with smtplib.SMTP(client.host, client.port, timeout=30) as smtp:
        smtp.sendmail(sender, [to], raw)


def subscribe(client: Client, outbox: Mailbox, reader: str) -> None:
    """One email to subscribe@ and a reply to the confirmation."""
    client.send(message(reader, address("subscribe"), "subscribe", ""))
    client.send(reply(outbox.wait_for(1, reader)[-1], reader))
    outbox.wait_for(2, reader)


def fetch(settings: Settings, path: str) -> bytes:
    url = f"http://127.0.0.1:{settings.archive.http_port}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def heading(page: bytes) -> Any:
    tree = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page)
    return tree.find(".//h1").text


def maildir_texts(outbox: Mailbox) -> list[str]:
    """Every email written, as UTF-8 text (an SMTPUTF8 message is UTF-8;
    any other is ASCII), its lines ending in LF as in any maildir."""
    folder = outbox.root / "new"
    return [path.read_bytes().decode("utf-8") for path in sorted(folder.iterdir())]


def assert_no_replacement_anywhere(outbox: Mailbox, site: Path | None = None) -> None:
    for mail in outbox.messages():
        for part in mail.walk():
            if part.get_content_maintype() == "text":
                assert REPLACEMENT not in part.get_content(), mail["Subject"]
        assert all(REPLACEMENT not in str(value) for value in mail.values())
    for path in site.rglob("*") if site else ():
        if path.is_file() and path.suffix in (".html", ".atom", ".json", ".xml"):
            assert REPLACEMENT not in path.read_text(encoding="utf-8"), path


def published_raw(client: Client, outbox: Mailbox, app: App) -> str:
    """A submission whose Subject and From name are raw UTF-8, confirmed,
    approved and endorsed; returns the case ID."""
    mail = submission(sender=JUAN)
    send_raw(client, raw_mail(mail, From=f'"{NAME}" <{JUAN}>', Subject=TITLE), JUAN, mail["To"])
    confirm = outbox.wait_for(1, JUAN)[-1]
    assert TITLE in body_text(confirm)
    client.send(reply(confirm, JUAN))
    review = outbox.wait_for(1, ADMIN)[-1]
    assert TITLE in body_text(review) and NAME in body_text(review)
    assert TITLE in body_html(review) and NAME in body_html(review)
    click(client, review, "Approve", ADMIN)
    endorse = outbox.wait_for(1, FOCAL)[-1]
    assert TITLE in body_text(endorse)
    click(client, endorse, "Endorse", FOCAL)
    with app.database.transaction() as session:
        case = session.scalars(select(Case)).one()
        assert case.title == TITLE
        author = select(Participant.name).where(Participant.email == JUAN)
        assert session.scalars(author).all() == [NAME]
        case_id = case.public_id
    assert state(app, case_id) == "published"
    return case_id


def first_of_next_month() -> str:
    today = datetime.now(UTC)
    year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
    return datetime(year, month, 1, 7, tzinfo=UTC).isoformat()


def test_a_raw_utf8_title_and_name_read_the_same_everywhere(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    """A Subject and a From name written as raw UTF-8 bytes are the title and
    the name, exactly, in the emails, on the case page, in the feed, in the
    digest and in the monthly report."""
    subscribe(client, outbox, READER)
    case_id = published_raw(client, outbox, app)

    page_url = f"{settings.site.base_url}/cases/{case_id}/"
    notices = lambda: [m for m in outbox.to(JUAN) if page_url in body_text(m)]  # noqa: E731
    (notice,) = wait_until(notices, what="the author told of the publication")
    assert TITLE in body_text(notice) and TITLE in body_html(notice)
    # Confirm, acknowledgement, ..., publication: the title in each.
    assert all(TITLE in body_text(m) for m in outbox.to(JUAN))

    root = settings.archive.output_dir
    wait_until(lambda: case_id in (root / "index.html").read_text(), what="the index")
    assert heading(fetch(settings, f"/cases/{case_id}/")) == TITLE
    feed = feedparser.parse(fetch(settings, "/feed.atom"))
    assert [entry.title for entry in feed.entries] == [TITLE]

    assert main(["digest", "send", "--config", str(settings.source)]) == 0
    (digest,) = [m for m in outbox.to(READER) if page_url in body_text(m)]
    assert TITLE in body_text(digest) and TITLE in body_html(digest)

    # A tick now first: the monthly schedule falls due at its first fire
    # after it was first seen, and the service's own first tick, which
    # would have seen it, may still be waiting on a loaded machine.
    assert main(["tick", "--config", str(settings.source)]) == 0
    assert main(["tick", "--now", first_of_next_month(), "--config", str(settings.source)]) == 0
    (monthly,) = [m for m in outbox.to(ADMIN) if "mailflow report" in body_text(m)]
    assert TITLE in body_text(monthly)
    table, page = list(monthly.iter_attachments())
    assert table.get_filename().startswith("mailflow-report-")
    assert TITLE in table.get_content() and TITLE in page.get_content()

    assert_no_replacement_anywhere(outbox, root)


def test_a_legacy_latin1_header_is_read_as_latin1(client: Client, outbox: Mailbox) -> None:
    """Raw Latin-1 bytes in the Subject, the From name and the document's
    file name (an old client that does not say so) are read in the charset
    the message declares, never shown as replacement characters."""
    sender = "jose@example.cl"
    mail = submission(sender=sender, attachment=None)
    mail.set_content(FORM + "\nSaludos, José\n", charset="iso-8859-1")
    mail.add_attachment(PDF, maintype="application", subtype="pdf", filename="DOCUMENT.pdf")
    raw = raw_mail(mail, "latin-1", From=f"José Núñez <{sender}>", Subject="Café para todos")
    raw = raw.replace(b"DOCUMENT", "Presentación".encode("latin-1"))
    send_raw(client, raw, sender, mail["To"])
    confirm = outbox.wait_for(1, sender)[-1]
    assert "Café para todos" in body_text(confirm)
    client.send(reply(confirm, sender))
    review = outbox.wait_for(1, ADMIN)[-1]
    assert "Café para todos" in body_text(review) and "José Núñez" in body_text(review)
    assert [a.get_filename() for a in review.iter_attachments()] == ["Presentación.pdf"]
    assert_no_replacement_anywhere(outbox)


@pytest.mark.parametrize(
    ("person", "written_as"),
    [
        ("josé@ejemplo.cl", "josé@ejemplo.cl"),
        ("用户@例子.中国", "用户@例子.中国"),
        # An ASCII local part: the domain in A-labels, no SMTPUTF8 needed.
        ("juan@例子.中国", "juan@xn--fsqu00a.xn--fiqs8s"),
    ],
)
def test_an_smtputf8_sender_is_answered_at_their_exact_address(
    client: Client, outbox: Mailbox, app: App, person: str, written_as: str
) -> None:
    """MAIL FROM:<josé@ejemplo.cl> SMTPUTF8: the submission is kept, its
    author registered under that address, and every answer is written to
    it; the email is an SMTPUTF8 message when the address needs one."""
    mail = submission(sender=f"José Núñez <{person}>", subject="Capital semilla")
    client.send(mail, sender=person)  # smtplib asks for SMTPUTF8 itself
    confirm = outbox.wait_for(1, written_as)[-1]
    assert confirm["To"] == written_as
    assert "Capital semilla" in body_text(confirm)
    (raw,) = [text for text in maildir_texts(outbox) if "Capital semilla" in text]
    header = raw.partition("\n\n")[0]
    assert f"\nTo: {written_as}\n" in header
    # Raw UTF-8 only where the address has no ASCII form; else RFC 2047.
    assert header.isascii() == written_as.isascii()

    client.send(reply(confirm, person), sender=person)
    wait_until(lambda: len(outbox.to(written_as)) >= 2, what="the acknowledgement")
    assert outbox.wait_for(1, ADMIN)[-1]
    with app.database.transaction() as session:
        assert session.scalars(select(Participant.email)).all() == [person]
        assert {r.recipient for r in session.scalars(select(OutboxMessage))} == {person, ADMIN}
    assert_no_replacement_anywhere(outbox)


def test_a_question_from_an_smtputf8_sender_is_answerable_by_a_person(
    client: Client, outbox: Mailbox
) -> None:
    """A question to help@ from josé@ejemplo.cl reaches the administrators
    with that exact address as Reply-To, so their answer goes straight back."""
    person = "josé@ejemplo.cl"
    client.send(message(person, address("help"), "Una pregunta", "¿Cómo envío mi caso?"))
    questions = lambda: [m for m in outbox.to(ADMIN) if "Cómo envío" in body_text(m)]  # noqa: E731
    (forwarded,) = wait_until(questions, what="the question forwarded")
    assert forwarded["Reply-To"] == person
    (raw,) = [text for text in maildir_texts(outbox) if f"\nReply-To: {person}\n" in text]
    assert f"Delivered-To: {ADMIN}" in raw
    assert_no_replacement_anywhere(outbox)


def test_an_address_that_is_not_utf8_is_refused_at_once(client: Client) -> None:
    """Bytes that are not UTF-8 in MAIL FROM or RCPT TO could be neither
    stored nor answered: 553, while the sender still hears it."""
    with smtplib.SMTP(client.host, client.port, timeout=30) as smtp:
        smtp.ehlo()
        assert "smtputf8" in smtp.esmtp_features and "8bitmime" in smtp.esmtp_features
        smtp.send(b"MAIL FROM:<jos\xe9@example.cl> SMTPUTF8\r\n")
        assert smtp.getreply()[0] == 553
        smtp.send(b"MAIL FROM:<jose@example.cl>\r\n")
        assert smtp.getreply()[0] == 250
        smtp.send(b"RCPT TO:<submit\xff@" + DOMAIN.encode() + b">\r\n")
        assert smtp.getreply()[0] == 553


# -- the other ingresses: LMTP and `mailflow ingest` -------------------------

JOSE = "josé@ejemplo.cl"


@pytest.fixture
def lmtp(
    write_config: Callable[..., Path], database_url: str, config_text: str
) -> Iterator[tuple[App, Settings]]:
    """The service with ``[smtp].lmtp = true``, as behind Postfix."""
    path = write_config(config_text, database_url)
    settings = load_settings(path, environ={"MAILFLOW_SMTP_LMTP": "true"})
    app = build(settings)
    service = Service(app)
    service.start()
    yield app, settings
    service.stop()
    app.database.dispose()


def test_an_smtputf8_sender_over_lmtp_is_answered_at_their_exact_address(
    lmtp: tuple[App, Settings],
) -> None:
    """LHLO, then MAIL FROM:<josé@ejemplo.cl> SMTPUTF8, as Postfix hands
    such a message on: the submission and the reply to its confirmation are
    kept, the author registered under that address, every answer written
    to it."""
    app, settings = lmtp

    def deliver(raw: bytes, recipient: str) -> None:
        with smtplib.LMTP(settings.smtp.host, settings.smtp.port, timeout=30) as server:
            server.ehlo()  # LHLO
            assert server.has_extn("smtputf8")
            server.sendmail(JOSE, [recipient], raw, mail_options=["SMTPUTF8", "BODY=8BITMIME"])

    outbox = Mailbox(settings.outbound.maildir)
    answered_at_their_address(app, outbox, JOSE, deliver)
    assert_no_replacement_anywhere(outbox)


def test_an_smtputf8_sender_through_ingest_is_answered_at_their_exact_address(
    settings: Settings, app: App, outbox: Mailbox
) -> None:
    """A message with From: José <josé@ejemplo.cl> in raw UTF-8, piped to
    `mailflow ingest -` with the envelope on the command line as an MTA's
    pipe writes it: kept, its author registered under that address, every
    answer written to it."""

    def deliver(raw: bytes, recipient: str) -> None:
        command = ["ingest", "-", "--config", str(settings.source)]
        envelope = ["--sender", JOSE, "--recipient", recipient]
        done = subprocess.run(
            [sys.executable, "-m", "mailflow", *command, *envelope],
            input=raw,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        assert b"kept in the spool" not in done.stderr, done.stderr.decode()

    answered_at_their_address(app, outbox, JOSE, deliver)
    assert_no_replacement_anywhere(outbox)


# -- a relay that cannot carry SMTPUTF8 -------------------------------------


class Relay:
    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def handle_DATA(self, server: SmtpServer, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 OK"


@pytest.fixture
def relayed(
    request: pytest.FixtureRequest, write_config: Callable[..., Path], database_url: str
) -> Iterator[tuple[App, Settings, Relay]]:
    """The service sending through a relay that offers SMTPUTF8 or not
    (the test's parameter)."""
    relay, port = Relay(), free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port, enable_SMTPUTF8=request.param)
    controller.start()
    outbound = f'[outbound]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {port}\n'
    settings = load_settings(write_config(outbound, database_url), environ={})
    app = build(settings)
    service = Service(app)
    service.start()
    yield app, settings, relay
    service.stop()
    app.database.dispose()
    controller.stop()


def answers_settled(app: App, count: int) -> dict[str, OutboxMessage]:
    """Recipient -> outbox row, once ``count`` rows are sent or failed."""

    def settled() -> dict[str, OutboxMessage] | None:
        with app.database.transaction() as session:
            rows = list(session.scalars(select(OutboxMessage)))
            done = len(rows) == count and all(r.sent_at or r.failed_at for r in rows)
            return {row.recipient: row for row in rows} if done else None

    return wait_until(settled, what=f"{count} answers sent or failed")  # type: ignore[no-any-return]


@pytest.mark.parametrize("relayed", [False], indirect=True)
def test_a_relay_without_smtputf8_leaves_the_email_failed_not_mangled(
    relayed: tuple[App, Settings, Relay],
) -> None:
    """An answer to josé@ejemplo.cl through a relay that does not offer
    SMTPUTF8 is never sent mangled: it is kept as failed, with the reason.
    An ASCII address, and one whose domain has A-labels, go through."""
    app, settings, relay = relayed
    client = Client(settings)
    for sender in ("josé@ejemplo.cl", "ana@example.org", "juan@例子.中国"):
        client.send(submission(sender=sender, subject="Capital semilla"))

    rows = answers_settled(app, 3)
    refused = rows["josé@ejemplo.cl"]
    assert refused.failed_at is not None and refused.sent_at is None
    assert "does not offer SMTPUTF8" in refused.last_error
    assert rows["ana@example.org"].sent_at and rows["juan@例子.中国"].sent_at
    received = sorted(e.rcpt_tos[0] for e in relay.received)
    assert received == ["ana@example.org", "juan@xn--fsqu00a.xn--fiqs8s"]
    assert all("SMTPUTF8" not in e.mail_options for e in relay.received)


@pytest.mark.parametrize("relayed", [True], indirect=True)
def test_a_relay_with_smtputf8_carries_the_address_as_it_is(
    relayed: tuple[App, Settings, Relay],
) -> None:
    """Through a relay that offers SMTPUTF8, the answer to josé@ejemplo.cl
    is sent as an SMTPUTF8 message, the address unchanged on the envelope
    and in the header."""
    app, settings, relay = relayed
    Client(settings).send(submission(sender="josé@ejemplo.cl", subject="Capital semilla"))
    assert answers_settled(app, 1)["josé@ejemplo.cl"].sent_at is not None
    (envelope,) = relay.received
    assert envelope.rcpt_tos == ["josé@ejemplo.cl"] and "SMTPUTF8" in envelope.mail_options
    assert isinstance(envelope.original_content, bytes)
    assert "\r\nTo: josé@ejemplo.cl\r\n".encode() in envelope.original_content


@pytest.mark.parametrize("declared", ["utf-8", "us-ascii"])
def test_a_text_part_mislabelled_as_utf8_keeps_its_accents(declared: str) -> None:
    """A text part that says it is UTF-8 (or ASCII) but holds Latin-1 or
    Windows-1252 bytes, as older clients send, is read in the charset its
    bytes fit: the summary keeps "Presentación", no replacement character."""
    body = "Summary: Presentación del capital semilla – 2026\nSaludos, José\n"
    raw = (
        "From: José <jose@example.cl>\r\nTo: submit@mailflow.localhost\r\n"
        f"Subject: Capital\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset={declared}\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + body.replace("\n", "\r\n").encode("cp1252")
    text = parse_message(raw).text
    assert "Presentación del capital semilla – 2026" in text and "José" in text
    assert REPLACEMENT not in text
