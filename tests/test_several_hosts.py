"""Several hosts on one PostgreSQL (SPEC section 8): three real `mailflow
run` processes, each with its own config, spool and SMTP port, share one
database and one outbox maildir, as three machines behind one Postfix
would (the maildir stands for the relay they all send through).

Every email is sent once however many hosts drain the outbox; a host
killed with SIGKILL loses and doubles nothing; `mailflow tick` run on every
host for the same moment sends each reminder once; and the scheduler and
the site writer, held through the database, pass to another host when
their host dies. PostgreSQL only: SQLite is one host.

The load test sends 120 submissions by default, so that it takes about
half a minute on a loaded two-core machine; the issue's full size:
``MAILFLOW_TORTURE_HOSTS_MESSAGES=600``.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
from conftest import Client, Mailbox, free_port, headline, in_english, wait_until
from flows import ADMIN, ANA, FOCAL, click, submitted
from mails import address, submission
from sqlalchemy import func, select
from test_crash import cases_and_confirmations, handled, start, stop
from test_timed import silent_at_focal_point

from mailflow.app import build
from mailflow.cli import main
from mailflow.config import Settings, load_settings
from mailflow.store.db import Database
from mailflow.store.models import OutboxMessage
from mailflow.tokens import load_or_create_key

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("several_hosts")]
postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

MESSAGES = int(os.environ.get("MAILFLOW_TORTURE_HOSTS_MESSAGES", "120"))
CLIENTS, KILLS, HOSTS = 12, 2, 3
LEASE_SECONDS = 3  # short, so that a takeover takes seconds, not the default 15
SUBMIT = address("submit")


@pytest.fixture
def hosts(database_url: str, tmp_path: Path) -> list[Settings]:
    """Three hosts' configs: one database, one outbox, one token key (the
    links one host writes, another must read), one files folder (as
    deploy/README.md section 8 mounts it: the document one host received,
    another publishes); each its own folder (spool, archive) and SMTP port."""
    outbox, key, files = tmp_path / "outbox", tmp_path / "token.key", tmp_path / "files"
    load_or_create_key(key)  # made once, not raced for by three hosts
    configs = []
    for number in range(HOSTS):
        folder = tmp_path / f"host{number}"
        folder.mkdir()
        path = folder / "config.toml"
        path.write_text(
            f'[database]\nurl = "{database_url}"\n\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {free_port()}\n\n'
            f"[spool]\nworkers = 2\n\n"
            f'[files]\ndir = "{files}"\n\n'
            f'[outbound]\nmaildir = "{outbox}"\n\n'
            f'[security]\ntoken_key_file = "{key}"\n\n'
            f"[archive]\nhttp_port = 0\n\n[monitor]\nhttp_port = 0\n\n"
            f'[hosts]\nname = "host-{number}"\nlease_seconds = {LEASE_SECONDS}\n\n'
            + in_english(f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n')
        )
        configs.append(load_settings(path, environ={}))
    return configs


@pytest.fixture
def running(hosts: list[Settings]) -> Iterator[dict[int, list[subprocess.Popen[bytes]]]]:
    """Each host's processes, the running one last; all stopped after."""
    processes: dict[int, list[subprocess.Popen[bytes]]] = {n: [] for n in range(HOSTS)}
    yield processes
    for started in processes.values():
        for process in started:
            stop(process)


def run_host(
    hosts: list[Settings], running: dict[int, list[subprocess.Popen[bytes]]], n: int
) -> None:
    log = hosts[n].source.parent / "run.log"
    running[n].append(start(hosts[n], log))


def status(settings: Settings, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["status", "--json", "--config", str(settings.source)]) == 0
    record: dict[str, object] = json.loads(capsys.readouterr().out)
    return record


def holder(record: dict[str, object], role: str) -> str | None:
    roles = record["roles"]
    assert isinstance(roles, dict)
    return roles[role]["holder"]  # type: ignore[no-any-return]


class Senders:
    """Twelve mail servers' worth of clients, each message first to the
    host its number picks; a refused connection or a 4xx sends it to the
    next host, as Postfix moves on to its next LMTP nexthop."""

    def __init__(self, hosts: list[Settings]) -> None:
        self.hosts = hosts
        self.waiting: queue.Queue[int] = queue.Queue()
        for number in range(MESSAGES):
            self.waiting.put(number)
        self.accepted: dict[int, str] = {}  # number -> Message-ID
        self.refused: list[str] = []
        self.retries = 0
        self._lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                number = self.waiting.get_nowait()
            except queue.Empty:
                return
            mail = submission(sender=f"person{number}@example.org", subject=f"Practice {number}")
            raw = mail.as_bytes(policy=SMTP_POLICY)  # the very bytes, each retry
            self._send(number, str(mail["Message-ID"]), raw)

    def _send(self, number: int, message_id: str, raw: bytes) -> None:
        host = number % len(self.hosts)
        while True:
            smtp = self.hosts[host].smtp
            try:
                with smtplib.SMTP(smtp.host, smtp.port, timeout=30) as connection:
                    connection.sendmail(f"person{number}@example.org", [SUBMIT], raw)
                with self._lock:
                    self.accepted[number] = message_id
                return
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code >= 500:
                    self.refused.append(f"{number}: {exc}")
                    return
            except (smtplib.SMTPServerDisconnected, OSError):
                pass
            with self._lock:
                self.retries += 1
            host = (host + 1) % len(self.hosts)
            time.sleep(0.1)


def settled(database: Database, hosts: list[Settings]) -> bool:
    """Every host's spool empty and no email left to send."""
    for settings in hosts:
        spool = settings.spool.dir
        if any((spool / "new").iterdir()) or any((spool / "cur").iterdir()):
            return False
    with database.transaction() as session:
        unsent = session.scalar(
            select(func.count(OutboxMessage.id)).where(
                OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None)
            )
        )
    return unsent == 0


@postgres_only
def test_three_hosts_with_one_killed_twice_lose_and_double_nothing(
    hosts: list[Settings], running: dict[int, list[subprocess.Popen[bytes]]]
) -> None:
    """Submissions spread over three hosts by twelve clients while one host
    is killed with SIGKILL twice and restarted: every one is accepted,
    handled once and acknowledged by exactly one email answering it."""
    for number in range(HOSTS):
        run_host(hosts, running, number)
    senders = Senders(hosts)
    clients = [threading.Thread(target=senders.run) for _ in range(CLIENTS)]
    started = time.monotonic()
    for client in clients:
        client.start()
    moments = sorted(random.Random(23).sample(range(MESSAGES // 5, MESSAGES * 4 // 5), KILLS))
    victim = 1
    for moment in moments:
        wait_until(lambda: len(senders.accepted) >= moment, 120, f"{moment} accepted")  # noqa: B023
        running[victim][-1].send_signal(signal.SIGKILL)
        running[victim][-1].wait(10)
        run_host(hosts, running, victim)
    for client in clients:
        client.join(300)
    sending = time.monotonic() - started
    assert senders.refused == []
    assert sorted(senders.accepted) == list(range(MESSAGES))

    database = Database(hosts[0].database.url)
    try:
        wait_until(lambda: handled(database) >= MESSAGES, 300, "every message handled")
        wait_until(lambda: settled(database, hosts), 120, "the spools and the outbox to empty")
        titles, confirmations = cases_and_confirmations(database)
    finally:
        database.dispose()
    assert sorted(titles) == sorted(f"Practice {n}" for n in range(MESSAGES))
    assert sorted(confirmations) == sorted(f"person{n}@example.org" for n in range(MESSAGES))

    # The shared outbox, read as the senders would: one acknowledgement
    # answering each submission, none twice.
    acknowledgements = Mailbox(hosts[0].outbound.maildir).of("submission_confirm")
    answered = Counter(str(mail["In-Reply-To"]) for mail in acknowledgements)
    assert set(answered) == set(senders.accepted.values())
    assert max(answered.values()) == 1
    assert len({str(mail["Message-ID"]) for mail in acknowledgements}) == MESSAGES

    # Each outgoing email was sent by one host; again only if a kill fell
    # between its delivery and the commit that records it (one per kill
    # at most: a host sends one email at a time). A kill between that
    # commit and the log line after it leaves one sent email unlogged
    # (the maildir above has it once).
    logs = [(s.source.parent / "run.log").read_text() for s in hosts]
    sends = Counter(re.findall(r"outbox (\d+) to \S+ \(\w+\) sent:", "".join(logs)))
    assert len(sends) >= MESSAGES - KILLS
    assert sum(count - 1 for count in sends.values()) <= KILLS

    for settings in hosts:
        assert list((settings.spool.dir / "tmp").iterdir()) == []
        assert list((settings.spool.dir / "shunt").iterdir()) == []
        # Each host took its share of the submissions.
        assert "processed spool" in (settings.source.parent / "run.log").read_text()
    print(
        f"\n{MESSAGES} messages over {HOSTS} hosts, {CLIENTS} clients, {KILLS} SIGKILLs: "
        f"sent in {sending:.1f} s with {senders.retries} retries; 0 lost, 0 doubled"
    )


@postgres_only
def test_tick_on_every_host_for_the_same_moment_sends_each_reminder_once(
    hosts: list[Settings],
) -> None:
    """Ten cases silent at the focal point for three weeks; `mailflow tick`
    for the same moment on each of the three hosts at once."""
    app = build(hosts[0])
    try:
        silent_at_focal_point(app, [f"Case {number}" for number in range(10)], 22 * timedelta(1))
    finally:
        app.database.dispose()
    now = datetime.now(UTC).isoformat()
    ticks = [
        subprocess.Popen(
            [sys.executable, "-m", "mailflow", "tick", "--now", now, "--config", str(s.source)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for s in hosts
    ]
    for tick in ticks:
        _, error = tick.communicate(timeout=120)
        assert tick.returncode == 0, error.decode()[-2000:]
    outbox = Mailbox(hosts[0].outbound.maildir)
    reminders = [m for m in outbox.to(FOCAL) if "Reminder" in headline(m)]
    escalations = [m for m in outbox.to(ADMIN) if "No answer" in headline(m)]
    updates = [m for m in outbox.to(ANA) if "Where your case stands" in headline(m)]
    assert len(reminders) == 10 and len(escalations) == 10 and len(updates) == 10
    assert len({m["Subject"] for m in reminders}) == 10
    # Each email once, whichever host's tick sent it.
    assert len({m["Message-ID"] for m in outbox.messages()}) == len(outbox.messages())


@postgres_only
def test_the_site_writers_host_killed_another_takes_over_and_publishes(
    hosts: list[Settings],
    running: dict[int, list[subprocess.Popen[bytes]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The host holding the site writer (and the scheduler) dies; a case
    published meanwhile reaches the site, written by another host, well
    within a minute; `mailflow status` names the new holder."""
    for number in range(HOSTS):
        run_host(hosts, running, number)
    first = wait_until(lambda: holder(status(hosts[0], capsys), "site_writer"), 30, "a writer")
    dead = int(first.removeprefix("host-"))
    survivor = (dead + 1) % HOSTS
    client, outbox = Client(hosts[survivor]), Mailbox(hosts[0].outbound.maildir)
    review = submitted(client, outbox)

    running[dead][-1].send_signal(signal.SIGKILL)
    running[dead][-1].wait(10)
    killed = time.monotonic()
    click(client, review, "Approve", ADMIN)
    click(client, outbox.wait_for_mail("focal_review", FOCAL), "Endorse", FOCAL)

    def page() -> Path | None:
        for number in range(HOSTS):
            found = hosts[number].archive.output_dir / "cases" / "BP-2026-0001" / "index.html"
            if number != dead and found.exists():
                return found
        return None

    wait_until(page, 60, "the case's page on another host")
    taken_over = time.monotonic() - killed
    assert taken_over < 60
    record = status(hosts[survivor], capsys)
    new = holder(record, "site_writer")
    assert new is not None and new != first
    assert holder(record, "scheduler") not in (None, first)
    assert page() == hosts[int(new.removeprefix("host-"))].archive.output_dir / "cases" / (
        "BP-2026-0001/index.html"
    )
    seen = {host["name"]: host for host in record["hosts"]}  # type: ignore[union-attr]
    assert set(seen) == {f"host-{n}" for n in range(HOSTS)}
    # The dead one: not seen since its lease ran out, and not stopped cleanly.
    assert seen[first]["seen_seconds_ago"] >= LEASE_SECONDS
    assert seen[first]["stopped_at"] is None and seen[first]["state"] == "silent"
    with capsys.disabled():
        print(f"\nthe site writer's host killed: {new} published {taken_over:.1f} s later")

    # Stopped cleanly (SIGTERM, as systemd stops it), a host gives its
    # roles back at once, and says it stopped.
    stop(running[int(new.removeprefix("host-"))][-1])
    last = ({f"host-{n}" for n in range(HOSTS)} - {first, new}).pop()
    record = wait_until(
        lambda: (r := status(hosts[survivor], capsys)) and holder(r, "site_writer") == last and r,
        10,
        "the last host to hold the roles",
    )
    assert holder(record, "scheduler") == last
    seen = {host["name"]: host for host in record["hosts"]}
    assert seen[new]["stopped_at"] is not None and seen[new]["state"] == "stopped"
    assert seen[last]["state"] == "running"


@postgres_only
def test_a_host_that_cannot_start_holds_no_role(
    hosts: list[Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    """A host whose SMTP port is taken stops at start, and leaves the
    scheduler and the site writer free for the others."""
    config = ["--config", str(hosts[0].source)]
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind((hosts[0].smtp.host, hosts[0].smtp.port))
        taken.listen()
        run = subprocess.run(
            [sys.executable, "-m", "mailflow", "run", *config], capture_output=True, timeout=120
        )
    assert run.returncode != 0
    assert b"address already in use" in run.stderr
    record = status(hosts[0], capsys)
    assert holder(record, "scheduler") is None
    assert holder(record, "site_writer") is None
