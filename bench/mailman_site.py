"""A private GNU Mailman 3 site for the side-by-side benchmark: installed
once into its own virtual environment outside the repository (it must
never share mailflow's dependencies), configured in a temporary folder with
every port on 127.0.0.1, its outgoing mail going to the bench's fsync sink.

It must never leave a process behind: ``MailmanSite.stop`` asks Mailman's
master to stop and kills its whole session when it does not."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.servers import ROOT, free_port

CACHE = Path(os.environ.get("MAILFLOW_BENCH_CACHE", Path.home() / ".cache" / "mailflow-bench"))
VENV = CACHE / "mailman-venv"
INSTALLED = VENV / ".mailflow-bench-installed"  # written only after pip succeeded
# Mailman 3.3.10 (the newest, December 2026) declares no upper bound on
# SQLAlchemy, but its held-message query fails on 2.1 ("FROM expression
# ... expected, got Select"): the REST API's /held answers 500.
REQUIREMENTS = ("mailman", "sqlalchemy<2.1")
LIST = "submit@bench.example"
STOP_SECONDS = 60
# The runners Mailman 3.3 starts by default: archive, bounces, command,
# digest, in, lmtp, out, pipeline, rest, retry, task, virgin.
RUNNERS = 12


def installed() -> bool:
    return INSTALLED.exists()


def install() -> None:
    """Create Mailman's virtual environment once; later runs reuse it."""
    if installed():
        return
    print(f"installing GNU Mailman 3 into {VENV} (once; a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", *REQUIREMENTS], check=True)  # pip prints its progress
    INSTALLED.write_text(" ".join(REQUIREMENTS) + "\n")


def versions() -> str:
    """'mailman 3.3.10, SQLAlchemy 2.0.58': what the figures were measured on."""
    script = (
        "from importlib.metadata import version as v; "
        "print(f\"mailman {v('mailman')}, SQLAlchemy {v('sqlalchemy')}\")"
    )
    done = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", script], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@dataclass(frozen=True)
class Ports:
    lmtp: int
    rest: int
    smtp: int  # where Mailman sends its notices: the sink


def write_config(folder: Path, ports: Ports) -> Path:
    """Mailman's own defaults (SQLite, one instance of each runner) but
    for the paths and the ports; ``NullMTA``: no alias files to write."""
    # Mailman's own gunicorn settings, without the control socket gunicorn
    # 25.1+ would otherwise make in ~/.gunicorn/ (one for all the sites).
    gunicorn = folder / "gunicorn.cfg"
    gunicorn.write_text(
        "[gunicorn]\ngraceful_timeout = 30\ntimeout = 360\ncontrol_socket_disable = true\n"
    )
    config = folder / "mailman.cfg"
    config.write_text(
        "[mailman]\n"
        "site_owner: owner@bench.example\n"
        "layout: bench\n\n"
        "[paths.bench]\n"
        f"var_dir: {folder / 'var'}\n\n"
        "[mta]\n"
        "incoming: mailman.mta.null.NullMTA\n"
        "lmtp_host: 127.0.0.1\n"
        f"lmtp_port: {ports.lmtp}\n"
        "smtp_host: 127.0.0.1\n"
        f"smtp_port: {ports.smtp}\n\n"
        "[webservice]\n"
        "hostname: 127.0.0.1\n"
        f"port: {ports.rest}\n"
        f"configuration: {gunicorn}\n"
    )
    return config


class MailmanSite:
    """One running Mailman: ``mailman start`` (the master and its
    runners, in a session of their own), the list, and the counts."""

    def __init__(self, folder: Path, sink_port: int, members: int) -> None:
        self.folder = folder
        self.ports = Ports(free_port(), free_port(), sink_port)
        self.config = write_config(folder, self.ports)
        self._create_list(members)
        self.master = 0  # the pid of Mailman's master once started: its session's leader

    @property
    def _python(self) -> str:
        return str(VENV / "bin" / "python")

    def _create_list(self, members: int) -> None:
        script = ROOT / "bench" / "mailman_list.py"
        # -I: without the script's folder on the path, where bench/mailman.py
        # would be found instead of Mailman's package.
        subprocess.run(
            [self._python, "-I", str(script), str(self.config), LIST, str(members)], check=True
        )

    def _mailman(self, *arguments: str) -> None:
        root = ["--run-as-root"] if os.geteuid() == 0 else []
        subprocess.run(
            [str(VENV / "bin" / "mailman"), *root, "-C", str(self.config), *arguments],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=self.folder,
            timeout=120,
        )

    def start(self) -> None:
        """Start, and return once every runner has started (a post taken
        before the incoming runner is up would wait for it, which is start-up
        time, not work) and LMTP and the REST API answer."""
        self._mailman("start")
        pid_file = self.folder / "var" / "master.pid"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if not self.master and pid_file.exists() and pid_file.read_text().strip():
                self.master = int(pid_file.read_text())
            if (
                self.master
                and self._runners_started() >= RUNNERS
                and _answers(self.ports.lmtp)
                and _answers(self.ports.rest)
            ):
                return
            time.sleep(0.2)
        raise RuntimeError(f"Mailman did not start in 180 s: see {self.folder}/var/logs")

    def _runners_started(self) -> int:
        log = self.folder / "var" / "logs" / "mailman.log"
        return log.read_text().count(" runner started.") if log.exists() else 0

    def held(self) -> int:
        """Held posts, counted in Mailman's database: a read of one small
        table, lighter on Mailman than asking its REST API each time."""
        database = self.folder / "var" / "data" / "mailman.db"
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        try:
            row = connection.execute("SELECT COUNT(*) FROM _request WHERE request_type = 1")
            return int(row.fetchone()[0])
        finally:
            connection.close()

    def shunted(self) -> int:
        """Posts a runner failed on, set aside in Mailman's shunt queue."""
        return sum(1 for _ in (self.folder / "var" / "queue" / "shunt").glob("*.pck"))

    def held_by_rest(self) -> int:
        """The same count as Mailman's REST API gives it (checked once a run)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports.rest}/3.1/lists/{LIST}/held?count=1&page=1",
            headers={"Authorization": "Basic " + base64.b64encode(b"restadmin:restpass").decode()},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(json.load(answer)["total_size"])

    def stop(self) -> None:
        """``mailman stop``; the whole session killed if it is still there
        after STOP_SECONDS."""
        if not self.master:
            return
        with contextlib.suppress(subprocess.SubprocessError):  # then killed below
            self._mailman("stop")
        deadline = time.monotonic() + STOP_SECONDS
        while _session_alive(self.master):
            if time.monotonic() > deadline:
                os.killpg(self.master, signal.SIGKILL)
                break
            time.sleep(0.2)
        self.master = 0


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
    except OSError:
        return False
    return True


def _session_alive(leader: int) -> bool:
    """Any process left in the process group Mailman's master leads (it
    calls setsid, and its runners stay in its group)."""
    try:
        os.killpg(leader, 0)
    except ProcessLookupError:
        return False
    return True
