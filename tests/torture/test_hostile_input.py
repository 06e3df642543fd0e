"""Hostile messages within a budget (SPEC section 7): each goes through the
real `mailflow ingest` (spool, parse, triage, workflow, outbox) in a process
of its own, whose CPU time and peak memory the kernel reports (wait4). Each
must be kept with its raw bytes, cost at most about 2 s of CPU beyond an
ordinary submission and 200 MB, and leave the next message unaffected."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
from mails import address, submission
from sqlalchemy import select

from mailflow.config import Settings, load_settings
from mailflow.store.db import Database
from mailflow.store.models import InboundMessage

pytestmark = pytest.mark.torture

CPU_BUDGET_SECONDS = 2.0
MEMORY_BUDGET_MIB = 200


def nested(levels: int) -> bytes:
    head = b"From: ana@example.org\r\nTo: submit@mailflow.localhost\r\nSubject: Deep\r\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        for n in range(levels)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % n for n in reversed(range(levels)))
    return head + opening + b"Content-Type: text/plain\r\n\r\nhello\r\n" + closing


def many_parts(count: int) -> bytes:
    head = (
        b"From: ana@example.org\r\nTo: submit@mailflow.localhost\r\nSubject: Parts\r\n"
        b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n'
    )
    part = b"--p\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return head + part * count + b"--p--\r\n"


def huge_headers(lines: int) -> bytes:
    extra = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"v" * 60) for n in range(lines))
    long_subject = b"Subject: " + b"=?utf-8?q?=C3=A9?= " * 20_000 + b"\r\n"
    return (
        b"From: ana@example.org\r\nTo: submit@mailflow.localhost\r\n"
        + long_subject
        + extra
        + (b"\r\nbody\r\n")
    )


def broken_encodings() -> bytes:
    words = b" ".join(b"=?x-unknown-%d?B?////?= =?utf-8?q?=FF=FE?=" % n for n in range(2000))
    return (
        b"From: =?nonsense?Q?Ana?= <ana@example.org>\r\nTo: submit@mailflow.localhost\r\n"
        b"Subject: " + words + b"\r\nContent-Type: text/plain; charset=x-martian\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b"!!!not base64!!!\r\n" * 1000
    )


def zip_bomb_docx() -> bytes:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("word/document.xml", "w") as member,  # 100 MB, ~100 KB zipped
    ):
        for _ in range(100):
            member.write(bytes(1_000_000))
    message = submission(attachment=("bomb.docx", buffer.getvalue(), "application/octet-stream"))
    return message.as_bytes(policy=SMTP_POLICY)


def hostile_html() -> bytes:
    html = (
        '<html><body><script>alert(1)</script><img src="http://tracker.example/x.gif">'
        + "<div>" * 20_000
        + "Kind: Best practice"
        + "</div>" * 20_000
        + "</body></html>"
    )
    return (
        b"From: ana@example.org\r\nTo: submit@mailflow.localhost\r\nSubject: Html\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html.encode()
    )


HOSTILE = {
    "5,000 nested multiparts": lambda: nested(5_000),
    "100,000 parts": lambda: many_parts(100_000),
    "20,000 headers and a 400 KB subject": lambda: huge_headers(20_000),
    "broken charsets and encodings": broken_encodings,
    "a zip bomb as the document": zip_bomb_docx,
    "HTML with scripts and 20,000 nested divs": hostile_html,
}


# Runs the CLI and, at exit, writes its own peak resident size (VmHWM) to a
# file: the kernel's ru_maxrss of a child also counts the parent's memory
# it was forked from, which would measure pytest, not mailflow.
PEAK_REPORTING = """
import atexit, runpy, sys
report = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as status, open(report, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM")).split()[1])
atexit.register(peak)
sys.argv[0] = "mailflow"
runpy.run_module("mailflow", run_name="__main__", alter_sys=True)
"""


def ingest(settings: Settings, message: bytes, folder: Path) -> tuple[int, float, float]:
    """(exit status, CPU seconds, peak MiB) of one `mailflow ingest`."""
    path, peak = folder / "message.eml", folder / "peak"
    path.write_bytes(message)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PEAK_REPORTING,
            str(peak),
            "ingest",
            str(path),
            "--recipient",
            address("submit"),
            "--sender",
            "ana@example.org",
            "--config",
            str(settings.source),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime, int(peak.read_text()) / 1024


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only: the budgets are the parser's, the same on either
    database (docs/reliability.md), and the suite must stay within minutes."""
    shutil.copyfile(sqlite_template, tmp_path / "mailflow.db")
    return f"sqlite:///{tmp_path}/mailflow.db"


@pytest.fixture
def ingest_settings(write_config, database_url: str) -> Settings:  # type: ignore[no-untyped-def]
    return load_settings(write_config("", database_url), environ={})


def test_hostile_messages_stay_within_budget_and_the_queue_flows(
    ingest_settings: Settings, tmp_path: Path
) -> None:
    settings = ingest_settings
    ordinary = submission().as_bytes(policy=SMTP_POLICY)
    status, baseline_cpu, baseline_mib = ingest(settings, ordinary, tmp_path)
    assert status == 0
    figures = [f"ordinary submission: {baseline_cpu:.2f} s CPU, {baseline_mib:.0f} MiB"]
    for name, build in HOSTILE.items():
        message = build()
        status, cpu, mib = ingest(settings, message, tmp_path)
        figures.append(
            f"{name} ({len(message) / 1e6:.1f} MB): {cpu - baseline_cpu:+.2f} s CPU, {mib:.0f} MiB"
        )
        assert status == 0, name
        assert cpu - baseline_cpu <= CPU_BUDGET_SECONDS, figures[-1]
        assert mib <= MEMORY_BUDGET_MIB, figures[-1]
    status, _, _ = ingest(settings, submission(subject="After the storm").as_bytes(), tmp_path)
    assert status == 0

    database = Database(settings.database.url, settings.files.dir)
    try:
        with database.transaction() as session:
            records = session.scalars(select(InboundMessage)).all()
            kept = [(record.outcome, record.raw) for record in records]
    finally:
        database.dispose()
    assert len(kept) == len(HOSTILE) + 2  # every one kept, with its bytes
    assert all(raw for _, raw in kept)
    assert not any(outcome == "processing" for outcome, _ in kept)
    assert not any((settings.spool.dir / "shunt").iterdir())
    print("\n" + "\n".join(figures))
