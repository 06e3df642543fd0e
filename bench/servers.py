"""Servers under test, as subprocesses on 127.0.0.1: the bare aiosmtpd
limit and `mailflow run`. Each stops by itself or when terminated."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server under test exited early")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server under test did not start")


def start_sink(folder: Path, seconds: float = 900) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.sink", str(port), str(folder), str(seconds)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    wait_listening(port, process)
    return process, port


# A worker process idle this long after work is replaced by a fresh one;
# shorter than the default, so that memory at rest is measured sooner.
PROCESS_IDLE_SECONDS = 5


def mailflow_config(
    folder: Path, database_url: str = "", processes: int = 0, extra: str = ""
) -> tuple[Path, int]:
    """A config for a benchmark run in its own folder (SQLite there unless
    a database URL is given; worker threads unless ``processes``; ``extra``
    TOML appended); returns it and its SMTP port."""
    port = free_port()
    config = folder / "config.toml"
    database = f'[database]\nurl = "{database_url}"\n\n' if database_url else ""
    config.write_text(
        f"{database}[smtp]\nport = {port}\n\n[archive]\nhttp_port = 0\n\n[monitor]\nhttp_port = 0\n"
        f"\n[spool]\nprocesses = {processes}\nprocess_idle_seconds = {PROCESS_IDLE_SECONDS}\n"
        + extra
    )
    return config, port


def start_mailflow(
    folder: Path, database_url: str = "", processes: int = 0, extra: str = ""
) -> tuple[subprocess.Popen[bytes], int]:
    config, port = mailflow_config(folder, database_url, processes, extra)
    process = subprocess.Popen(
        [sys.executable, "-m", "mailflow", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, process)
    return process, port


def stop(process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    """End a server the benchmark started. One that does not stop within
    ``seconds`` of SIGTERM is killed, never left running, and the
    benchmark fails saying so."""
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired as timeout:
        process.kill()
        process.wait()
        # Caused by the timeout, whose own context keeps the error the run
        # may already be failing with in the traceback.
        raise RuntimeError(f"{process.args!r} did not stop within {seconds} s; killed") from timeout
