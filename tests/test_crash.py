"""kill -9 in the middle of processing loses and doubles nothing (SPEC
section 10): the real `mailflow run` in a subprocess, real SMTP, then a
restart that picks up where the dead process stopped."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Mailbox, wait_until
from mails import address, submission
from sqlalchemy import func, select, update

from mailflow.config import Settings, load_settings
from mailflow.hosts import gone, process_identity
from mailflow.store.db import Database
from mailflow.store.models import Case, InboundMessage, OutboxMessage

MESSAGES = 60
pytestmark = pytest.mark.slow


def start(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "mailflow", "run", "--config", str(settings.source)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def listening() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            smtplib.SMTP(settings.smtp.host, settings.smtp.port, timeout=1).quit()
        except OSError:
            return False
        return True

    wait_until(listening, 30, "mailflow run to listen")
    return process


def handled(database: Database) -> int:
    """Distinct subjects processed to a handler: each test message has its own."""
    with database.transaction() as session:
        return int(
            session.scalar(
                select(func.count(func.distinct(InboundMessage.subject))).where(
                    InboundMessage.outcome.like("handled%")
                )
            )
            or 0
        )


def cases_and_confirmations(database: Database) -> tuple[list[str], list[str]]:
    """The title of every case and the recipient of every confirmation
    request, sorted: one each per test message when nothing was lost or
    doubled."""
    with database.transaction() as session:
        titles = session.scalars(select(Case.title)).all()
        confirmations = session.scalars(
            select(OutboxMessage.recipient).where(OutboxMessage.template == "submission_confirm")
        ).all()
    return sorted(titles), sorted(confirmations)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as systemd would; SIGKILL if it does not stop in 20 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.fixture
def crash_settings(write_config, database_url: str) -> Settings:  # type: ignore[no-untyped-def]
    return load_settings(write_config("", database_url), environ={})


@pytest.fixture
def running(crash_settings: Settings, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_sigkill_mid_processing_loses_and_doubles_nothing(
    crash_settings: Settings, running: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    settings, log = crash_settings, tmp_path / "run.log"
    outbox = Mailbox(settings.outbound.maildir)
    running.append(start(settings, log))
    senders = [f"person{n}@example.org" for n in range(MESSAGES)]
    spool = settings.spool.dir

    def in_the_spool() -> list[str]:
        return [p.name for folder in ("new", "cur") for p in (spool / folder).iterdir()]

    with smtplib.SMTP(settings.smtp.host, settings.smtp.port, timeout=30) as smtp:
        for sender in senders:
            smtp.send_message(submission(sender=sender, subject=f"Practice of {sender}"))
            # Processing is under way, and more waits for it: kill it now.
            # (Only the first: a machine that processes as fast as this
            # loop sends would otherwise leave nothing to interrupt.)
            if len(in_the_spool()) >= 3 and len(outbox.messages()) >= 3:
                break
    sent = senders.index(sender) + 1
    running[0].send_signal(signal.SIGKILL)
    running[0].wait(10)
    left = in_the_spool()
    assert left, "the kill came too late to interrupt anything"

    running.append(start(settings, log))
    wait_until(lambda: len(outbox.messages()) >= sent, 60, f"{sent} confirmation emails")
    database = Database(settings.database.url)
    try:

        def settled() -> bool:
            with database.transaction() as session:
                return session.scalar(select(func.count(InboundMessage.id))) == sent

        wait_until(settled, 30, "every message recorded")
        with database.transaction() as session:
            authors = Counter(c.author.email for c in session.scalars(select(Case)))
    finally:
        database.dispose()
    assert authors == Counter(senders[:sent])  # one case per accepted message
    confirmations = Counter(str(m["Delivered-To"]) for m in outbox.messages())
    assert confirmations == Counter(senders[:sent])  # one email each, none doubled
    for folder in (
        spool / "tmp",
        spool / "new",
        spool / "cur",
        spool / "shunt",
        settings.outbound.maildir / "tmp",
    ):
        assert list(folder.iterdir()) == [], folder
    assert address("submit") not in confirmations


def test_a_host_started_again_sends_at_once_what_its_killed_process_had_leased(
    crash_settings: Settings, running: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Killed while sending, a host leaves the emails it had leased to wait
    out their lease (here an hour). Started again on the same machine, it
    frees those of its dead process at once; one leased by a process still
    alive (this test) keeps waiting."""
    settings, log = crash_settings, tmp_path / "run.log"
    outbox = Mailbox(settings.outbound.maildir)
    running.append(start(settings, log))
    with smtplib.SMTP(settings.smtp.host, settings.smtp.port, timeout=30) as smtp:
        for sender in ("ana@example.org", "luis@example.org"):
            smtp.send_message(submission(sender=sender))
    wait_until(lambda: len(outbox.messages()) == 2, 30, "both confirmation requests")
    killed = running[0]
    holders = {
        "ana@example.org": process_identity(killed.pid),
        "luis@example.org": process_identity(),  # alive: this test
    }
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    database = Database(settings.database.url)
    try:
        # As a kill mid-send leaves them: leased, not sent.
        with database.transaction() as session:
            for recipient, holder in holders.items():
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.recipient == recipient)
                    .values(
                        sent_at=None,
                        lease_until=datetime.now(UTC) + timedelta(hours=1),
                        leased_by=holder,
                    )
                )
        running.append(start(settings, log))

        def waiting() -> list[str]:
            with database.transaction() as session:
                return list(
                    session.scalars(
                        select(OutboxMessage.recipient).where(OutboxMessage.sent_at.is_(None))
                    )
                )

        wait_until(lambda: waiting() == ["luis@example.org"], 30, "the dead process's email sent")
    finally:
        database.dispose()
    assert "freed 1 email(s) leased by a process gone before sending" in log.read_text()
    # Written again under its own name: the maildir holds it once.
    delivered = Counter(str(m["Delivered-To"]) for m in outbox.messages())
    assert delivered == Counter({"ana@example.org": 1, "luis@example.org": 1})


def test_only_a_process_of_this_kernel_and_pid_namespace_is_judged_gone() -> None:
    """A pid means a process only in its own kernel's boot and pid namespace:
    another machine's or container's lease is never freed early, whatever
    its pid; here, a process that ended, or whose pid another took since,
    has gone."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    alive = process_identity(sleeper.pid)
    try:
        assert not gone(alive)
        assert not gone(process_identity())
    finally:
        sleeper.kill()
        sleeper.wait(10)
    assert gone(alive)
    machine, boot, namespace, pid, started = alive.split("/")
    assert gone(process_identity().rsplit("/", 1)[0] + "/0")  # this pid, another start
    assert not gone("/".join([machine, "another-boot", namespace, pid, started]))
    assert not gone("/".join([machine, boot, "1", pid, started]))  # another pid namespace
    assert not gone(f"vm:{pid}")  # named as where /proc does not say
