"""`mailflow ingest` and hostile input: every message is kept, the worker
never crashes, unreadable mail is reported to the administrator once, and
mail for none of our addresses is kept as unroutable, never answered."""

from __future__ import annotations

import html
import io
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import DATA, Mailbox, body_html, body_text, headline
from mails import PDF, address, message, submission
from sqlalchemy import select

from mailflow.app import App
from mailflow.cli import EX_DATAERR, main
from mailflow.config import Settings
from mailflow.errors import UnparseableMessage
from mailflow.languages import SHIPPED
from mailflow.notify.outbox import Outgoing
from mailflow.parse import MAX_HEADER_BYTES, MAX_HEADER_FIELDS, parse_message
from mailflow.spool import Envelope
from mailflow.store.models import Document, InboundMessage

ADMIN = "admin@mailflow.localhost"
ANA = "ana@example.org"


def ingest(settings: Settings, path: Path, *extra: str) -> int:
    return main(["ingest", str(path), "--config", str(settings.source), *extra])


def inbound(app: App) -> list[InboundMessage]:
    with app.database.transaction() as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def test_ingest_accepts_and_processes_a_file(
    settings: Settings,
    app: App,
    outbox: Mailbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The pipe-transport entry point: exit 0 once durable, then processed."""
    path = tmp_path / "mail.eml"
    path.write_bytes(submission().as_bytes())
    assert ingest(settings, path) == 0
    assert "accepted:" in capsys.readouterr().out
    [confirm] = outbox.wait_for(1, "ana@example.org")
    assert "Please confirm" in headline(confirm)
    assert app.spool.pending() == []


def test_ingest_reads_standard_input(settings: Settings, outbox: Mailbox) -> None:
    """`mailflow ingest -` in a real process, as an MTA would run it."""
    mail = message("ana@example.org", address("help"), "how?", "Hello").as_bytes()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailflow",
            "ingest",
            "-",
            "--config",
            str(settings.source),
            "--recipient",
            address("help"),
        ],
        input=mail,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    outbox.wait_for(1, "ana@example.org")


def test_oversize_ingest_is_refused(settings: Settings, tmp_path: Path) -> None:
    """Too big: a data error the MTA turns into a bounce, naming the limit."""
    path = tmp_path / "big.eml"
    path.write_bytes(b"x" * (settings.limits.max_message_bytes + 1))
    assert ingest(settings, path) == EX_DATAERR


def test_mail_for_none_of_our_addresses_is_kept_unanswered(
    settings: Settings, app: App, outbox: Mailbox, tmp_path: Path
) -> None:
    """Unroutable: kept with its bytes, no reply."""
    path = tmp_path / "lost.eml"
    path.write_bytes(message("ana@example.org", "someone@example.com", "hi", "hello").as_bytes())
    assert ingest(settings, path) == 0
    [record] = inbound(app)
    assert record.outcome == "unroutable"
    assert b"hello" in record.raw
    assert outbox.messages() == []


@pytest.mark.parametrize("name", ["deep_nesting", "many_parts", "garbage", "no_from", "bad_base64"])
def test_unreadable_mail_is_kept_and_reported_once(
    settings: Settings, app: App, outbox: Mailbox, name: str
) -> None:
    """MIME bombs and garbage: kept, the administrator told once, nobody else."""
    path = DATA / f"{name}.eml"
    assert ingest(settings, path) == 0
    assert ingest(settings, path, "--recipient", address("submit")) == 0  # another delivery
    records = inbound(app)
    assert [r.outcome for r in records] == ["unparseable", "unparseable"]
    assert records[0].raw == path.read_bytes()
    reports = outbox.wait_for(2, ADMIN)
    assert len(outbox.messages()) == 2  # one per delivery, none to the sender
    assert "could not be read" in reports[0]["Subject"]
    assert records[0].detail in body_text(reports[0])


def test_messages_enclosed_deeper_than_the_parser_goes_are_refused_as_too_deep(
    settings: Settings, app: App, outbox: Mailbox, tmp_path: Path
) -> None:
    """Messages in messages (message/rfc822), 3,000 deep: no boundary to
    count first, so the email package runs out of depth itself. That is the
    refusal for depth, told to the administrator, not a crash of the worker
    (mail-parser turned it into an error of its own, which went uncaught)."""
    path = tmp_path / "enclosed.eml"
    enclosing = b"Content-Type: message/rfc822\r\n\r\n" * 3000
    path.write_bytes(b"From: ana@example.org\r\n" + enclosing + b"hello\r\n")
    assert ingest(settings, path) == 0
    [record] = inbound(app)
    assert record.outcome == "unparseable"
    assert record.detail == "its MIME parts are nested deeper than 12 levels"
    [report] = outbox.wait_for(1, ADMIN)
    assert record.detail in body_text(report)


def test_a_header_cut_short_before_its_from_is_reported_as_such(
    settings: Settings, app: App, outbox: Mailbox
) -> None:
    """A script that added In-Reply-To copied from a CR LF file left a
    carriage return alone: the email package ends the header there, before
    the From line. The administrator reads that, not that the From is
    unreadable."""
    assert ingest(settings, DATA / "header_cut_short.eml") == 0
    [record] = inbound(app)
    assert record.outcome == "unparseable"
    assert record.detail.startswith("its header ends early, before its From line")
    [report] = outbox.wait_for(1, ADMIN)
    assert record.detail in body_text(report)


def test_broken_charsets_are_read_forgivingly(
    settings: Settings, app: App, outbox: Mailbox
) -> None:
    """Unknown charsets do not stop a submission: it waits for confirmation."""
    assert ingest(settings, DATA / "broken_charset.eml") == 0
    [record] = inbound(app)
    assert record.outcome == "handled: submit", record.detail
    outbox.wait_for(1, "ana@example.org")


def test_path_like_attachment_names_are_sanitised(settings: Settings, app: App) -> None:
    """A PDF called ../../../etc/cron.d/..\\evil name.exe is stored as a
    plain .pdf name: no folders, no control characters, the real type."""
    assert ingest(settings, DATA / "path_attachment.eml") == 0
    with app.database.transaction() as session:
        [document] = session.scalars(select(Document)).all()
        assert document.filename == "evil_name.pdf"
        assert document.content == PDF


def test_a_bounce_through_a_pipe_is_never_answered(
    settings: Settings, app: App, outbox: Mailbox, tmp_path: Path
) -> None:
    """Postfix's pipe passes MAILER-DAEMON (or an empty sender) for bounces:
    kept, ignored, unanswered."""
    path = tmp_path / "bounce.eml"
    path.write_bytes(message(ANA, address("help"), "Undelivered", "sorry").as_bytes())
    assert ingest(settings, path, "--sender", "MAILER-DAEMON") == 0
    assert ingest(settings, path, "--sender", "", "--recipient", address("help")) == 0
    assert [(r.outcome, r.detail) for r in inbound(app)] == [("ignored", "ignored: bounce")] * 2
    assert outbox.messages() == []


def test_a_zip_bomb_is_not_unpacked(settings: Settings, app: App, tmp_path: Path) -> None:
    """An ODT-looking zip whose mimetype entry unpacks to 200 MB is judged
    from its first bytes, quickly and in little memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", b"a" * 200_000_000)
    bomb = buffer.getvalue()
    assert len(bomb) < 1_000_000
    path = tmp_path / "bomb.eml"
    path.write_bytes(submission(attachment=("bomb.odt", bomb, "application/zip")).as_bytes())
    assert ingest(settings, path) == 0
    with app.database.transaction() as session:
        assert session.scalars(select(Document)).all() == []


def _unreadable(raw: bytes) -> UnparseableMessage:
    with pytest.raises(UnparseableMessage) as refused:
        parse_message(raw)
    return refused.value


def _every_reason() -> list[UnparseableMessage]:
    """One message for each reason a message cannot be read, but the
    parser's own errors (``mime``), which no message here sets off."""
    corpus = [
        (DATA / f"{name}.eml").read_bytes()
        for name in ("deep_nesting", "many_parts", "no_from", "header_cut_short", "bad_base64")
    ]
    ordinary = submission().as_bytes()
    corpus += [
        b"X-Long: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\nbody\r\n",
        b"".join(b"X-Field-%d: v\r\n" % n for n in range(MAX_HEADER_FIELDS + 1)) + b"\r\nbody\r\n",
        # An address no one can answer, written as HTML: the HTML part shows it as text.
        ordinary.replace(
            b"From: Ana Perez <ana@example.org>", b'From: <"<img src=x>"@example.org>'
        ),
    ]
    found = [_unreadable(raw) for raw in corpus]
    found.append(UnparseableMessage("mime", "the MIME structure could not be read (x)", error="x"))
    return found


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the mail alone
@pytest.mark.parametrize("tag", SHIPPED)
def test_why_a_message_could_not_be_read_is_said_in_the_administrators_language(
    app: App, tag: str
) -> None:
    """The English is what the record keeps; every other language has its own."""
    reasons = _every_reason()
    assert {r.why for r in reasons} == {
        "depth", "parts", "no_sender", "header_ends_early", "base64",
        "header_size", "header_fields", "unanswerable", "mime",
    }  # fmt: skip
    envelope = Envelope("", (address("submit"),), datetime(2026, 12, 5, tzinfo=UTC), "smtp")
    for unreadable in reasons:
        context = {"unreadable": unreadable, "envelope": envelope, "record": InboundMessage(id=7)}
        mail = app.workflow.outbox.compose(Outgoing("admin_bad_message", ADMIN, context), tag)
        assert "<img" not in body_html(mail)
        for body in (body_text(mail), html.unescape(body_html(mail))):
            if tag == "en":
                assert unreadable.reason in body
            else:
                assert unreadable.reason not in body, (tag, unreadable.why)
                assert all(str(fact) in body for fact in unreadable.facts.values()), tag
