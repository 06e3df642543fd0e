"""Watching it (SPEC section 8, "Monitoring"; `mailflow status`): `mailflow
run` answers /healthz and /metrics on [monitor].http_port, `mailflow status`
tells the depths of the queues and the last tick, and a path mailflow
cannot write is one line naming the config file and the key, never a
traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import POSTGRES_URL, Client, Mailbox, wait_until
from flows import submitted
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mailflow.app import App, Service
from mailflow.cli import main
from mailflow.config import Settings
from mailflow.spool import Envelope

NOBODY = 65534


def get(settings: Settings, path: str) -> tuple[int, bytes]:
    url = f"http://{settings.monitor.http_host}:{settings.monitor.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, refused.read()


def health(settings: Settings) -> tuple[int, dict[str, str]]:
    status, body = get(settings, "/healthz")
    return status, json.loads(body)


def metrics(settings: Settings) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = get(settings, "/metrics")
    assert status == 200, body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


@contextmanager
def database_down(settings: Settings) -> Iterator[None]:
    """The database stops answering new connections, as when its disk or its
    server goes away, and comes back afterwards. The shared PostgreSQL
    server keeps running: only this test's database refuses clients."""
    url = make_url(settings.database.url)
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database))
        path.rename(path.with_name("away.db"))
        path.mkdir()  # in its place, a folder SQLite cannot open
        try:
            yield
        finally:
            path.rmdir()
            path.with_name("away.db").rename(path)
        return
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = url.database

    def allow(allowed: bool) -> None:
        with admin.connect() as connection:
            connection.execute(
                text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
            )
            if not allowed:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )

    allow(False)
    try:
        yield
    finally:
        allow(True)
        admin.dispose()


def test_healthz_names_the_database_while_it_does_not_answer(
    service: Service, settings: Settings
) -> None:
    healthy = {"status": "ok", "database": "ok", "spool": "ok", "files": "ok"}
    assert health(settings) == (200, healthy)

    with database_down(settings):
        status, body = health(settings)
        assert status == 503
        assert body["status"] == "failing"
        assert body["database"] != "ok" and body["spool"] == "ok"

    assert health(settings) == (200, healthy)


def test_healthz_names_the_files_folder_while_it_is_gone(
    service: Service, settings: Settings
) -> None:
    unmounted = settings.files.dir.with_name("files-elsewhere")
    settings.files.dir.rename(unmounted)  # as a shared mount that went away
    try:
        status, body = health(settings)
        assert status == 503
        assert str(settings.files.dir) in body["files"] and body["spool"] == "ok"
    finally:
        unmounted.rename(settings.files.dir)
    assert health(settings)[0] == 200


def test_metrics_count_a_submission_through_the_queues(
    client: Client, outbox: Mailbox, settings: Settings
) -> None:
    before = metrics(settings)
    assert before[("mailflow_messages_accepted_total", ())] == 0

    submitted(client, outbox)  # a submission and the reply that confirms it

    def moved() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        now = metrics(settings)
        sent = now[("mailflow_outgoing_emails", (("state", "sent"),))]
        done = now[("mailflow_messages_processed_total", ())] == 2
        return now if done and sent >= 2 else None

    after = wait_until(moved, what="the counters to move")
    assert after[("mailflow_messages_accepted_total", ())] == 2
    assert after[("mailflow_messages_shunted_total", ())] == 0
    assert after[("mailflow_cases", (("state", "admin_review"),))] == 1
    assert after[("mailflow_outgoing_emails", (("state", "failed"),))] == 0
    assert after[("mailflow_spool_messages", (("folder", "waiting"),))] == 0
    assert after[("mailflow_spool_oldest_waiting_age_seconds", ())] == 0


def test_status_tells_what_waits_and_when_the_last_tick_ran(
    app: App, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--config", str(settings.source)]
    assert main(["status", *config]) == 0
    assert "Last tick: none" in capsys.readouterr().out

    accepted = datetime.now(UTC)
    envelope = Envelope("ana@example.org", ("submit@mailflow.localhost",), accepted, "test")
    app.spool.put(envelope, b"Subject: waiting\r\n\r\nno worker runs\r\n")
    assert main(["tick", "--now", "2026-12-01T08:00:00+00:00", *config]) == 0
    capsys.readouterr()

    assert main(["status", *config]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Host: ")
    assert lines[1].startswith("Spool: 1 waiting, 0 being processed, 0 shunted; oldest waiting: ")
    assert lines[3].startswith("Last tick: 2026-12-01T08:00:00+00:00")
    # No `mailflow run` is running: nobody holds the roles.
    assert lines[4:] == [
        "Scheduler: nobody (no running host renewed it)",
        "Site writer: nobody (no running host renewed it)",
        "Hosts seen in the last day: 0",
    ]

    assert main(["status", "--json", *config]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["hosts"] == []
    assert record["roles"]["scheduler"]["holder"] is None
    assert record["spool"]["waiting"] == 1
    oldest = datetime.fromisoformat(record["spool"]["oldest_waiting"])
    assert abs((oldest - accepted).total_seconds()) < 1
    assert record["outbox"]["failed"] == 0
    assert record["last_tick"] == "2026-12-01T08:00:00+00:00"


def test_a_path_under_a_file_is_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[spool]\ndir = "config.toml/spool"\n')

    assert main(["status", "--config", str(config)]) == 78

    error = capsys.readouterr().err
    assert error == (
        f"mailflow: config error: {config}: [spool] dir: cannot create the folder "
        f"{tmp_path}/config.toml/spool: Not a directory\n"
    )


def test_a_config_in_a_read_only_folder_is_one_line_not_a_traceback() -> None:
    """As under /etc: the relative var/ of the embedded config resolves
    next to the file, where the service's user may not create it. (Run as
    nobody when the tests run as root, who may write anywhere.)"""
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        etc = Path(top) / "etc"
        etc.mkdir()
        (etc / "config.toml").write_text("[smtp]\nport = 8025\n")
        etc.chmod(0o555)
        root = os.getuid() == 0
        as_nobody = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if root else {}
        done = subprocess.run(
            [sys.executable, "-m", "mailflow", "status", "--config", str(etc / "config.toml")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=top,
            **as_nobody,  # type: ignore[call-overload]
        )
        etc.chmod(0o755)

    assert done.returncode == 78, done.stderr
    assert done.stderr == (
        f"mailflow: config error: {etc}/config.toml: [database] url: "
        f"cannot create the folder {etc}/var: Permission denied\n"
    )


def test_status_names_the_running_host_as_holder_of_both_roles(
    service: Service, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """One `mailflow run` (SQLite, or alone on PostgreSQL) holds the
    scheduler and the site writer; `mailflow status` names it, with its
    last heartbeat."""
    config = ["--config", str(settings.source)]
    name = f"{socket.gethostname()}:{os.getpid()}"
    assert main(["status", *config]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[4].startswith(f"Scheduler: {name} since ")
    assert lines[5].startswith(f"Site writer: {name} since ")
    assert lines[6] == "Hosts seen in the last day: 1"
    assert lines[7].startswith(f"  {name}: running; last seen ")
    assert lines[7].endswith("; holds the scheduler and site writer")

    assert main(["status", "--json", *config]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["roles"]["scheduler"]["holder"] == name
    assert record["roles"]["site_writer"]["holder"] == name
    [host] = record["hosts"]
    assert host["name"] == name and host["this_machine"] and host["state"] == "running"
    assert host["scheduler"] and host["site_writer"] and host["seen_seconds_ago"] < 10
