"""The disk fails under the real `mailflow run` (SPEC section 10): while
fsync fails with EIO, or the spool's disk is full, senders hear 451 or 452
and never 250; once the fault clears, the next try is accepted within 10 s,
and everything accepted is processed.

fsync is failed by a small LD_PRELOAD shim, built here with gcc, that
fails fsync and fdatasync while a marker file exists (so SQLite's fsyncs
fail too). The full disk is a real 2 MB tmpfs as the spool folder, which
needs root and mount; without them that test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import smtplib
import subprocess
import time
from collections.abc import Iterator
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
from conftest import wait_until
from mails import PDF, address, submission
from sqlalchemy import func, select
from test_crash import start, stop

from mailflow.config import Settings, load_settings
from mailflow.store.db import Database
from mailflow.store.models import Case

pytestmark = pytest.mark.torture

RECOVERY_SECONDS = 10
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void) {
    const char *marker = getenv("MAILFLOW_FAULT_FILE");
    return marker && access(marker, F_OK) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (failing()) { errno = EIO; return -1; }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (failing()) { errno = EIO; return -1; }
    return real(fd);
}
"""


def raw_submission(number: int, attachment_bytes: int = 0) -> bytes:
    document = PDF + b"%" * attachment_bytes
    message = submission(
        sender=f"person{number}@example.org",
        subject=f"Practice {number}",
        attachment=("practice.pdf", document, "application/pdf"),
    )
    return message.as_bytes(policy=SMTP_POLICY)


def send(settings: Settings, number: int, raw: bytes) -> int:
    """The SMTP code the service answers to this message's DATA."""
    with smtplib.SMTP(settings.smtp.host, settings.smtp.port, timeout=30) as smtp:
        try:
            smtp.sendmail(f"person{number}@example.org", [address("submit")], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code
    return 250


def accepted_within(settings: Settings, number: int, raw: bytes, seconds: float) -> float:
    """Send until 250, as a sender's retries would; how long it took."""
    started = time.monotonic()
    while (code := send(settings, number, raw)) != 250:
        assert code in (451, 452), code
        assert time.monotonic() - started < seconds, f"still {code} after {seconds} s"
        time.sleep(0.2)
    return time.monotonic() - started


def cases(settings: Settings) -> int:
    database = Database(settings.database.url)
    try:
        with database.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(Case)) or 0)
    finally:
        database.dispose()


@contextlib.contextmanager
def service(settings: Settings, log: Path, **environment: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        process = start(settings, log)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        yield
    finally:
        stop(process)


@pytest.fixture
def shim(tmp_path: Path) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler for the fsync fault shim")
    source, library = tmp_path / "failing_fsync.c", tmp_path / "failing_fsync.so"
    source.write_text(SHIM)
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(library), str(source), "-ldl"], check=True
    )
    return library


def test_failing_fsync_answers_451_never_250_and_recovers(
    write_config, database_url: str, shim: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(write_config("", database_url), environ={})
    marker = tmp_path / "fsync-fails"
    with service(
        settings,
        tmp_path / "run.log",
        LD_PRELOAD=str(shim),
        MAILFLOW_FAULT_FILE=str(marker),
    ):
        assert send(settings, 0, raw_submission(0)) == 250
        wait_until(lambda: cases(settings) == 1, 30, "the first case")

        marker.touch()
        answers = [send(settings, n, raw_submission(n)) for n in (1, 2, 3)]
        assert answers == [451, 451, 451]
        assert list((settings.spool.dir / "tmp").iterdir()) == []  # nothing half-written

        marker.unlink()
        took = accepted_within(settings, 1, raw_submission(1), RECOVERY_SECONDS)
        wait_until(lambda: cases(settings) == 2, 60, "the case of the message accepted later")
    print(f"\nfsync failing: 3 x 451, 0 x 250; accepted again {took:.2f} s after the fault cleared")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "spool-disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full-disk test needs root to mount a small tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_spool_disk_answers_452_never_250_and_recovers(
    write_config, database_url: str, small_disk: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    spool = small_disk / "spool"
    moved = {"MAILFLOW_SPOOL_DIR": str(spool)}  # (the config file has a [spool] already)
    settings = load_settings(write_config("", database_url), environ=moved)
    with service(settings, tmp_path / "run.log", **moved):
        assert send(settings, 0, raw_submission(0)) == 250
        wait_until(lambda: cases(settings) == 1, 30, "the first case")

        ballast = small_disk / "ballast"
        with contextlib.suppress(OSError), ballast.open("wb") as fill:
            while True:
                fill.write(b"\0" * 65536)
                fill.flush()
        big = raw_submission(1, attachment_bytes=300_000)
        answers = [send(settings, 1, big) for _ in range(3)]
        assert answers == [452, 452, 452]
        assert [p for p in (spool / "tmp").iterdir()] == []

        ballast.unlink()
        took = accepted_within(settings, 1, big, RECOVERY_SECONDS)
        wait_until(lambda: cases(settings) == 2, 60, "the case of the message accepted later")
    print(f"\nspool disk full: 3 x 452, 0 x 250; accepted again {took:.2f} s after space returned")
