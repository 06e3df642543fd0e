"""Raw messages and documents as files named by their SHA-256 (store/files.py):
written before the transaction that names them commits, found again after
a kill between the two, swept when nothing names them, and moved out of
the database (and back) by the schema migration."""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import ANY

import pytest
from alembic import command
from conftest import Client, Mailbox, wait_until
from flows import ADMIN, ANA
from mails import PDF, address, reply, submission
from sqlalchemy import select, text
from sqlalchemy.orm import undefer
from test_crash import start, stop

from mailflow.app import App, build
from mailflow.cli import main as mailflow
from mailflow.config import Settings
from mailflow.runner import Result
from mailflow.spool import Envelope
from mailflow.store.db import Database
from mailflow.store.models import Case, Document, InboundMessage, OutboxMessage, Participant

# `mailflow ingest` killed with SIGKILL the moment its Nth file is on disk
# (the raw message is the first, the document the second), before the
# transaction that names them commits.
KILL_AFTER_PUT = """
import os, signal, sys
from mailflow.cli import main
from mailflow.store.files import FileStore

put, puts = FileStore.put, []

def put_then_die(self, data):
    name = put(self, data)
    puts.append(name)
    if len(puts) == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    return name

FileStore.put = put_then_die
sys.exit(main(sys.argv[2:]))
"""


def stored(settings: Settings) -> set[str]:
    return {p.name for p in settings.files.dir.glob("??/*")}


def named(database: Database) -> set[str]:
    with database.transaction() as session:
        raws = session.scalars(select(InboundMessage.raw_sha256))
        documents = session.scalars(select(Document.sha256))
        return {*raws, *documents}


@pytest.fixture
def database(settings: Settings) -> Database:
    opened = Database(settings.database.url, settings.files.dir)
    yield opened
    opened.dispose()


@pytest.mark.slow
def test_a_kill_between_writing_and_commit_neither_loses_nor_leaks_a_file(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    puts = 2  # the raw message's and the document's files are on disk
    message = tmp_path / "submission.eml"
    message.write_bytes(submission(sender="ana@example.org").as_bytes())
    command = [sys.executable, "-c", KILL_AFTER_PUT, str(puts), "ingest", str(message)]
    killed = subprocess.run(
        [*command, "--recipient", address("submit"), "--config", str(settings.source)],
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert len(stored(settings)) == puts  # on disk ...
    assert named(database) == set()  # ... and named by nothing: the commit never came
    assert [p.name for p in (settings.spool.dir / "cur").iterdir()]  # its claim, left behind

    log = tmp_path / "run.log"
    process = start(settings, log)
    try:
        outbox = Mailbox(settings.outbound.maildir)
        wait_until(lambda: outbox.to("ana@example.org"), 30, "the acknowledgement")
    finally:
        stop(process)
    with database.transaction() as session:
        [record] = session.scalars(select(InboundMessage)).all()
        [case] = session.scalars(select(Case)).all()
        assert record.raw == message.read_bytes()
        assert case.document is not None and case.document.content == PDF
    # The second try found the files of the first: one of each, all named.
    assert stored(settings) == named(database) and len(stored(settings)) == 2
    assert len(outbox.to("ana@example.org")) == 1


def test_a_files_folder_gone_costs_no_try_and_a_blocked_subfolder_one_message_its_tries(
    settings: Settings, database: Database
) -> None:
    """The folder itself gone (a mount lost; a full disk alike): the
    message waits for it, as for a database outage, however many passes
    that takes, and the folder is not made again on the local disk. One
    subfolder blocked (here by a file) is that message's problem: its
    tries count, and it is set aside in the end, the queue flowing."""
    app = build(settings)
    try:
        envelope = Envelope("ana@example.org", (address("submit"),), datetime.now(UTC), "test")
        shutil.rmtree(settings.files.dir)
        app.spool.put(envelope, submission(sender="ana@example.org").as_bytes())
        for _ in range(settings.spool.max_tries + 2):
            assert app.runner.run_pending() == [Result.STORE_DOWN]
        assert not settings.files.dir.exists()
        assert [p.name.endswith(".t0") for p in (settings.spool.dir / "new").iterdir()] == [True]
        settings.files.dir.mkdir()  # mounted again
        assert app.runner.run_pending() == [Result.DONE]
        with database.transaction() as session:
            [case] = session.scalars(select(Case)).all()
            assert case.document is not None and case.document.content == PDF

        other = b"%PDF-1.4 another document\n%%EOF\n"
        blocked = settings.files.dir / hashlib.sha256(other).hexdigest()[:2]
        blocked.write_bytes(b"not a folder")
        raw = submission(
            sender="ana@example.org",
            subject="Another",
            attachment=("b.pdf", other, "application/pdf"),
        ).as_bytes()
        assert hashlib.sha256(raw).hexdigest()[:2] != blocked.name  # the raw message goes in
        app.spool.put(envelope, raw)
        passes = [app.runner.run_pending() for _ in range(settings.spool.max_tries + 1)]
        assert passes == [[Result.RETRY]] * settings.spool.max_tries + [[Result.SHUNTED]]
    finally:
        app.database.dispose()


def test_files_nothing_names_go_after_a_day_and_no_other(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    message = tmp_path / "submission.eml"
    message.write_bytes(submission(sender="ana@example.org").as_bytes())
    config = ["--config", str(settings.source)]
    assert mailflow(["ingest", str(message), "--recipient", address("submit"), *config]) == 0
    kept = named(database)
    assert stored(settings) == kept and len(kept) == 2
    # Left by a process killed before its commit, one three days ago, one
    # an hour ago (its transaction may still be under way).
    old, young = "a" * 64, "b" * 64
    for name, age in ((old, 3 * 86400), (young, 3600)):
        path = settings.files.dir / name[:2] / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(name.encode())
        os.utime(path, (time.time() - age,) * 2)
    half_written = settings.files.dir / "tmp" / "0f0f"
    half_written.write_bytes(b"half")
    os.utime(half_written, (time.time() - 3 * 86400,) * 2)
    for name in kept:  # named files are never taken, however old
        os.utime(settings.files.dir / name[:2] / name, (time.time() - 30 * 86400,) * 2)

    # The sweep's schedule is seen at the first tick and falls due by the
    # next night's; its "a day old" is the machine's clock, not --now's.
    nights = [datetime.now(UTC) + timedelta(days=days) for days in range(3)]
    assert mailflow(["tick", "--now", nights[0].isoformat(), *config]) == 0
    assert mailflow(["tick", "--now", nights[1].isoformat(), *config]) == 0
    assert stored(settings) == kept | {young}  # the old orphan set aside ...
    assert not half_written.exists()
    trash = settings.files.dir / "trash"
    assert [p.name for p in trash.iterdir()] == [old]
    # ... and a named file that a sweep set aside in the instant a put made
    # it young again (the race the two steps are for) is still read, and
    # goes back at the next sweep, while the orphan goes for good.
    document = hashlib.sha256(PDF).hexdigest()
    os.replace(settings.files.dir / document[:2] / document, trash / document)
    with database.transaction() as session:
        [case] = session.scalars(select(Case)).all()
        assert case.document is not None and case.document.content == PDF
    assert mailflow(["tick", "--now", nights[2].isoformat(), *config]) == 0
    assert stored(settings) == kept | {young}
    assert list(trash.iterdir()) == []


def test_db_upgrade_moves_the_bytes_out_of_the_database_and_back(
    settings: Settings, database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "submission.eml"
    message.write_bytes(submission(sender="ana@example.org").as_bytes())
    config = ["--config", str(settings.source)]
    assert mailflow(["ingest", str(message), "--recipient", address("submit"), *config]) == 0
    alembic = database._alembic_config()
    with database.engine.begin() as connection:
        alembic.attributes["connection"] = connection
        alembic.attributes["files"] = database.files
        command.downgrade(alembic, "0012")  # as a database of mailflow before the files
    for path in settings.files.dir.glob("??/*"):
        path.unlink()  # the database alone holds them now

    assert mailflow(["db", "upgrade", *config]) == 0
    assert f"0012 -> {database.head_revision()}" in capsys.readouterr().out
    with database.transaction() as session:
        [record] = session.scalars(select(InboundMessage)).all()
        [case] = session.scalars(select(Case)).all()
        assert record.raw == message.read_bytes()
        assert case.document is not None and case.document.content == PDF
    assert stored(settings) == named(database)


def test_db_upgrade_names_a_files_folder_it_cannot_create(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upgrade from before [files] with the key left out of a config in
    /etc would aim at /etc/.../var/files: the command says so, no traceback."""
    (tmp_path / "blocker").write_text("a file where the folder would go")
    config = write_config('[files]\ndir = "blocker/files"\n')
    assert mailflow(["db", "upgrade", "--config", str(config)]) == 78
    error = capsys.readouterr().err
    assert "[files] dir" in error and "blocker/files" in error


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_compresses_the_outbox_with_lz4_not_pglz(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """A review email carries the document again. pglz, PostgreSQL's
    default, spent as much CPU failing to shrink a PDF's base64 as the
    whole submission cost mailflow; lz4 gives up on it at once, and still
    shrinks text (migration 0014). A server built without lz4 stores the
    bytes as they are."""
    document = "Seed capital for micro entrepreneurs, one line of many.\n" * 6_000
    client.send(submission(attachment=("seed capital.txt", document.encode(), "text/plain")))
    client.send(reply(outbox.wait_for_mail("submission_confirm", ANA), ANA))
    review = outbox.wait_for_mail("admin_review", ADMIN)
    assert [a.get_content() for a in review.iter_attachments()] == [document]
    with app.database.transaction() as session:
        compression = session.scalar(
            text("SELECT pg_column_compression(raw) FROM outbox WHERE template = 'admin_review'")
        )
    assert compression in ("lz4", None)


def _a_review_email_waiting(app: App) -> bytes:
    """A registered author's submission processed, its two emails not sent
    yet; returns the document, a PDF of 300 KB."""
    now = datetime.now(UTC)
    with app.database.transaction() as session:
        session.add(
            Participant(email=ANA, name="Ana", economy="CL", created_at=now, confirmed_at=now)
        )
    document = b"%PDF-1.4\n" + os.urandom(300_000) + b"\n%%EOF\n"
    mail = submission(attachment=("seed capital.pdf", document, "application/pdf"))
    app.spool.put(Envelope(ANA, (address("submit"),), now, "test"), mail.as_bytes())
    assert app.runner.run_pending() == [Result.DONE]
    return document


def review_row(app: App) -> OutboxMessage:
    with app.database.transaction() as session:
        row = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.template == "admin_review")
            .options(undefer(OutboxMessage.raw))
        ).one()
        session.expunge(row)
        return row


def test_a_review_email_waits_without_its_document_and_is_sent_whole(
    app: App, outbox: Mailbox, settings: Settings
) -> None:
    """The outbox keeps the review email without the document's bytes,
    which the files store keeps already, and puts them back as it sends it.
    With the files' folder gone (a mount lost) the email waits and is tried
    again; it is never sent without its document."""
    document = _a_review_email_waiting(app)
    waiting = review_row(app)
    assert len(waiting.raw) < 20_000
    assert waiting.stored_places == [[ANY, hashlib.sha256(document).hexdigest()]]

    away = settings.files.dir.with_name("files-away")
    settings.files.dir.rename(away)
    assert app.drain_outbox() == 1  # the acknowledgement
    deferred = review_row(app)
    assert deferred.sent_at is None and deferred.failed_at is None and deferred.attempts == 1
    assert str(settings.files.dir) in deferred.last_error
    assert outbox.of("admin_review", ADMIN) == []

    away.rename(settings.files.dir)
    with app.database.transaction() as session:
        app.workflow.outbox.requeue(session.get(OutboxMessage, deferred.id))
    assert app.drain_outbox() == 1
    [review] = outbox.of("admin_review", ADMIN)
    [attached] = review.iter_attachments()
    assert attached.get_content() == document
    assert review_row(app).raw == waiting.raw  # as stored: the bytes are put back as sent


def test_going_back_a_migration_puts_the_document_back_into_waiting_emails(
    app: App, database: Database
) -> None:
    document = _a_review_email_waiting(app)
    alembic = database._alembic_config()
    with database.engine.begin() as connection:
        alembic.attributes["connection"] = connection
        alembic.attributes["files"] = database.files
        command.downgrade(alembic, "0014")  # as a database of mailflow before this
        raw = connection.execute(text("SELECT raw FROM outbox WHERE template = 'admin_review'"))
        whole = email.message_from_bytes(raw.scalar_one(), policy=email.policy.default)
        command.upgrade(alembic, "head")
    [attached] = whole.iter_attachments()
    assert attached.get_content() == document
