"""PostgreSQL goes away during a burst (SPEC section 10): mail is still
accepted (the spool needs no database), nothing is lost or shunted, the
service's memory stays bounded, and processing resumes by itself when the
database is back.

The test runs its own PostgreSQL cluster (initdb in a temporary folder, a
free port, run as the ``postgres`` user), so stopping it touches nothing
else. The outage lasts ``MAILFLOW_TORTURE_OUTAGE_SECONDS`` (15 in CI; the
issue's 60 s with ``MAILFLOW_TORTURE_OUTAGE_SECONDS=60``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import smtplib
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
from conftest import free_port, wait_until
from mails import address, submission
from sqlalchemy import func, select
from test_crash import start, stop

from mailflow.config import Settings, load_settings
from mailflow.store.db import Database
from mailflow.store.models import Case

pytestmark = pytest.mark.torture

OUTAGE_SECONDS = float(os.environ.get("MAILFLOW_TORTURE_OUTAGE_SECONDS", "15"))
BEFORE, DURING = 50, 100  # messages sent before the outage, and while it lasts


class Cluster:
    """A throwaway PostgreSQL server of the machine's own version."""

    def __init__(self) -> None:
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not binaries or os.geteuid() != 0:
            pytest.skip(
                "needs root and Debian's PostgreSQL binaries (initdb) for a private cluster"
            )
        self.bin = binaries[-1].parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mailflow-pg-"))
        self.data = self.root / "data"
        owner = pwd.getpwnam("postgres")
        os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        # The server's output goes to its log file: a pipe it inherited
        # would keep this call waiting for as long as the server runs.
        log = str(self.root / "server.log")
        self._as_postgres("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def _as_postgres(self, program: str, *arguments: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / program), *arguments],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.root,
        )


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    server = Cluster()
    server.start()
    yield server
    server.remove()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def send_burst(settings: Settings, numbers: range) -> list[int]:
    """Four connections' worth of senders; returns the numbers refused."""
    refused: list[int] = []

    def sender(part: range) -> None:
        with smtplib.SMTP(settings.smtp.host, settings.smtp.port, timeout=30) as smtp:
            for number in part:
                raw = submission(sender=f"p{number}@example.org", subject=f"Practice {number}")
                try:
                    smtp.sendmail(
                        f"p{number}@example.org",
                        [address("submit")],
                        raw.as_bytes(policy=SMTP_POLICY),
                    )
                except smtplib.SMTPResponseException:
                    refused.append(number)

    threads = [threading.Thread(target=sender, args=(numbers[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return refused


def cases(database: Database) -> int:
    with database.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Case)) or 0)


def test_a_database_outage_during_a_burst_loses_nothing(
    write_config, cluster: Cluster, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(write_config("", cluster.url), environ={})
    database = Database(settings.database.url)
    database.upgrade()
    process = start(settings, tmp_path / "run.log")
    try:
        assert send_burst(settings, range(BEFORE)) == []
        cluster.stop()
        outage_began = time.monotonic()
        rss_before = rss_kib(process.pid)
        assert send_burst(settings, range(BEFORE, BEFORE + DURING)) == []  # no 4xx: spooled
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_began)))
        grown_mib = (rss_kib(process.pid) - rss_before) / 1024
        assert process.poll() is None, "the service died with its database"
        cluster.start()
        back = time.monotonic()

        wait_until(lambda: cases(database) == BEFORE + DURING, 120, "every case after the outage")
        caught_up = time.monotonic() - back
        assert list((settings.spool.dir / "shunt").iterdir()) == []
        with database.transaction() as session:
            titles = session.scalars(select(Case.title)).all()
        assert sorted(titles) == sorted(f"Practice {n}" for n in range(BEFORE + DURING))
        assert grown_mib < 100
    finally:
        stop(process)
        database.dispose()
    print(
        f"\nPostgreSQL down {OUTAGE_SECONDS:.0f} s during a burst: {DURING} messages accepted "
        f"meanwhile, 0 refused, 0 lost, 0 shunted; memory grew {grown_mib:.1f} MiB; "
        f"all {BEFORE + DURING} cases {caught_up:.1f} s after the database came back"
    )
