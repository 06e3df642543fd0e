"""`[spool].processes` (SPEC sections 8 and 9): the real `mailflow run` in
a subprocess on PostgreSQL, with its spool workers as processes; real
SMTP; real SIGKILLs."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Mailbox, wait_until
from mails import submission
from sqlalchemy import func, select
from test_crash import start, stop

from bench.endtoend import children
from mailflow.config import Settings, load_settings
from mailflow.errors import ConfigError
from mailflow.store.db import Database
from mailflow.store.models import Case, InboundMessage

pytestmark = pytest.mark.slow
on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def workers_of(main: int) -> tuple[int, set[int]]:
    """The supervisor of ``main``'s worker processes, and the workers."""
    (supervisor,) = children(main)
    return supervisor, children(supervisor)


def alive(pid: int) -> bool:
    """Running, or ended and not yet reaped by its parent; an orphan's
    zombie waiting for a container's init to reap it has ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def send(settings: Settings, senders: list[str]) -> None:
    with smtplib.SMTP(settings.smtp.host, settings.smtp.port, timeout=30) as smtp:
        for sender in senders:
            smtp.send_message(submission(sender=sender, subject=f"Practice of {sender}"))


def processed_metric(settings: Settings) -> float:
    url = f"http://{settings.monitor.http_host}:{settings.monitor.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("mailflow_messages_processed_total "):
                return float(line.split()[1])
    raise AssertionError("no mailflow_messages_processed_total")


def with_processes(config: Path, processes: str) -> Path:
    """The suite's config (its [spool] section has the threads) with
    ``processes`` set."""
    text = config.read_text().replace("[spool]\n", f"[spool]\nprocesses = {processes}\n", 1)
    config.write_text(text)
    return config


@pytest.fixture
def settings(write_config, database_url: str) -> Settings:  # type: ignore[no-untyped-def]
    return load_settings(with_processes(write_config("", database_url), "2"), environ={})


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        stop(process)


@on_postgresql
def test_worker_processes_process_each_message_once_and_survive_a_kill(
    settings: Settings, running: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Two worker processes take the mail; the metrics count their work; a
    worker killed with SIGKILL is replaced, and its claims go back to the
    spool: each submission is one case and one confirmation request; after
    stop no process of the service is left."""
    log = tmp_path / "run.log"
    outbox = Mailbox(settings.outbound.maildir)
    service = start(settings, log)
    running.append(service)
    supervisor, first_workers = workers_of(service.pid)
    assert len(first_workers) == 2

    send(settings, [f"early{n}@example.org" for n in range(3)])
    wait_until(lambda: len(outbox.messages()) == 3, 60, "3 confirmation requests")
    wait_until(lambda: processed_metric(settings) == 3, 10, "the workers' passes counted")

    later = [f"later{n}@example.org" for n in range(5)]
    send(settings, later)
    killed = min(first_workers)
    os.kill(killed, signal.SIGKILL)  # most likely in the middle of the second batch
    wait_until(lambda: len(children(supervisor) - {killed}) == 2, 30, "a new worker process")
    wait_until(lambda: len(outbox.messages()) >= 8, 60, "8 confirmation requests")

    database = Database(settings.database.url)
    try:

        def settled() -> bool:
            with database.transaction() as session:
                return session.scalar(select(func.count(InboundMessage.id))) == 8

        wait_until(settled, 30, "every message recorded once")
        with database.transaction() as session:
            authors = Counter(case.author.email for case in session.scalars(select(Case)))
    finally:
        database.dispose()
    senders = [f"early{n}@example.org" for n in range(3)] + later
    assert authors == Counter(senders)
    assert Counter(str(m["Delivered-To"]) for m in outbox.messages()) == Counter(senders)
    assert f"worker process {killed} ended (SIGKILL)" in log.read_text()

    everyone = {supervisor, *children(supervisor)}
    stop(service)
    assert service.returncode == 0, log.read_text()
    assert not [pid for pid in everyone if alive(pid)]
    spool = settings.spool.dir
    assert [p.name for folder in ("new", "cur") for p in (spool / folder).iterdir()] == []


@on_postgresql
def test_worker_processes_end_when_the_main_process_dies(
    settings: Settings, running: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """kill -9 of `mailflow run` leaves no orphan: the supervisor and the
    workers notice their pipes closed and exit."""
    service = start(settings, tmp_path / "run.log")
    running.append(service)
    supervisor, workers = workers_of(service.pid)
    service.kill()
    service.wait(10)
    wait_until(
        lambda: not [pid for pid in (supervisor, *workers) if alive(pid)],
        30,
        "the worker processes to exit",
    )


@pytest.mark.parametrize("processes", ["-1", "65"])
def test_processes_out_of_range_is_a_config_error(write_config, processes: str) -> None:  # type: ignore[no-untyped-def]
    path = with_processes(write_config(), processes)
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert "[spool] processes" in str(error.value) and "\n" not in str(error.value)


@on_postgresql
def test_the_supervisor_killed_stops_the_service_with_an_error(
    settings: Settings, running: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Without its supervisor no worker could be replaced: `mailflow run`
    stops, saying why, with exit status 1 (for systemd to start it again),
    and its workers end too."""
    log = tmp_path / "run.log"
    service = start(settings, log)
    running.append(service)
    supervisor, workers = workers_of(service.pid)
    stuck = next(iter(workers))
    os.kill(stuck, signal.SIGSTOP)  # as if deep in a long pass: it never looks up
    os.kill(supervisor, signal.SIGKILL)
    assert service.wait(30) == 1
    assert "supervisor" in log.read_text() and "ended unexpectedly" in log.read_text()
    # The kernel ends every worker with its supervisor, the stuck one too.
    wait_until(lambda: not [pid for pid in (supervisor, *workers) if alive(pid)], 10)


@on_postgresql
def test_a_worker_idle_after_work_makes_way_for_a_fresh_one(  # type: ignore[no-untyped-def]
    write_config, database_url: str, running: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """`[spool].process_idle_seconds` after its last message a worker exits
    and the supervisor forks a fresh one, quietly (no death logged); the
    next mail is taken as before. A worker that never worked stays."""
    config = with_processes(write_config("", database_url), "2")
    config.write_text(
        config.read_text().replace("[spool]\n", "[spool]\nprocess_idle_seconds = 1\n")
    )
    settings = load_settings(config, environ={})
    log = tmp_path / "run.log"
    outbox = Mailbox(settings.outbound.maildir)
    service = start(settings, log)
    running.append(service)
    supervisor, first = workers_of(service.pid)

    time.sleep(2.5)  # idle without having worked: no reason to be replaced
    assert children(supervisor) == first
    send(settings, [f"early{n}@example.org" for n in range(4)])
    wait_until(lambda: len(outbox.messages()) == 4, 60, "4 confirmation requests")
    # Each worker that took some of them (one, or both) is replaced.
    wait_until(lambda: children(supervisor) - first, 30, "a fresh worker")
    wait_until(lambda: len(children(supervisor)) == 2, 30, "two workers again")

    send(settings, ["later@example.org"])
    wait_until(lambda: len(outbox.messages()) == 5, 60, "the workers took the next mail")
    stop(service)
    assert service.returncode == 0, log.read_text()
    assert "ended (" not in log.read_text()


def test_process_idle_seconds_below_one_is_a_config_error(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config()
    path.write_text(path.read_text().replace("[spool]\n", "[spool]\nprocess_idle_seconds = 0\n"))
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert "[spool] process_idle_seconds" in str(error.value)
