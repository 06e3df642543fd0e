"""End to end: 1,000 submissions from registered senders, from the first
message sent to the last administrator review email in the outbox, against
the limit server taking the same messages (goal: at least 0.6x its rate,
processing keeps up with acceptance). On SQLite and on PostgreSQL when one
is reachable at MAILFLOW_BENCH_POSTGRES_URL (default: the local server).

With ``profile=True`` the service is sampled by py-spy (all threads) and
the functions holding most samples are listed."""

from __future__ import annotations

import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.corpus import submission
from bench.load import send_all
from bench.servers import mailflow_config, start_mailflow, start_sink
from mailflow.app import build
from mailflow.clock import SystemClock
from mailflow.config import load_settings
from mailflow.store.models import Participant

POSTGRES = os.environ.get(
    "MAILFLOW_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1/postgres"
)
CONNECTIONS = 8


def register_senders(folder: Path, database_url: str, count: int) -> None:
    """The senders are registered participants, as after a first submission."""
    config, _ = mailflow_config(folder, database_url)
    app = build(load_settings(config, environ={}))
    now = SystemClock().now()
    try:
        with app.database.transaction() as session:
            session.add_all(
                Participant(
                    email=f"delegate{n}@example.org",
                    name=f"Delegate {n}",
                    economy="CL",
                    organization="Bench",
                    created_at=now,
                    confirmed_at=now,
                )
                for n in range(count)
            )
    finally:
        app.database.dispose()


def _count_files(folder: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(folder))
    except FileNotFoundError:
        return 0


def end_to_end(messages: list[bytes], database_url: str, profile: Path | None) -> float:
    """Messages per second, first send to the last review email written."""
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-e2e-") as folder:
        root = Path(folder)
        register_senders(root, database_url, len(messages))
        process, port = start_mailflow(root, database_url)
        sampler = None
        if profile is not None:
            sampler = subprocess.Popen(
                [
                    _py_spy(),
                    "record",
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--output",
                    str(profile),
                    "--pid",
                    str(process.pid),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
        outbox = root / "var" / "outbox" / "new"
        try:
            started = time.perf_counter()
            send_all(port, messages, CONNECTIONS)
            expected = 2 * len(messages)  # an acknowledgement and a review each
            deadline = time.monotonic() + 900
            while _count_files(outbox) < expected:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"only {_count_files(outbox)} of {expected} emails written")
                time.sleep(0.05)
            seconds = time.perf_counter() - started
        finally:
            if sampler is not None:
                sampler.send_signal(2)
                sampler.wait(60)
            process.terminate()
            process.wait(30)
    return len(messages) / seconds


def _py_spy() -> str:
    found = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if found is None:
        raise RuntimeError("the profile needs py-spy: pip install -e '.[bench]'")
    return found


def limit(messages: list[bytes]) -> float:
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-limit-") as folder:
        process, port = start_sink(Path(folder))
        try:
            return send_all(port, messages, CONNECTIONS).per_second
        finally:
            process.terminate()
            process.wait(30)


def fresh_postgres() -> tuple[str, str] | None:
    try:
        admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        name = f"mailflow_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
    except Exception as exc:  # no server: the PostgreSQL row is skipped, and says so
        print(f"PostgreSQL not reachable ({exc.__class__.__name__}); skipped", flush=True)
        return None
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}", name


def drop_postgres(name: str) -> None:
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def top_functions(raw: Path, count: int = 12) -> list[tuple[str, float, float]]:
    """(function, share of busy samples with it anywhere on the stack, share
    as the innermost frame) from py-spy's collapsed stacks (it samples only
    threads that are not idle), busiest innermost first."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";") if "(" in f]
        if not frames or not samples.isdigit():
            continue
        total += int(samples)
        for frame in set(frames):
            inclusive[frame] += int(samples)
        own[frames[-1]] += int(samples)
    return [
        (name, inclusive[name] / total, own[name] / total) for name, _ in own.most_common(count)
    ]


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def _frame(text: str) -> str:
    """ "parse (mailparser/core.py:123)" -> "parse (mailparser/core.py)"."""
    name, _, where = text.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})"


def run_endtoend(quick: bool) -> list[str]:
    count, repetitions = (10, 1) if quick else (1_000, 3)
    messages = [submission(n, 2_000 if quick else 300_000) for n in range(count)]
    # Limit and mailflow take turns, so a change in the machine's pace
    # during the run touches both sides of each ratio alike.
    limits: list[float] = []
    rates: dict[str, list[float]] = {"SQLite": [], "PostgreSQL": []}
    profile = None if quick else Path(tempfile.mkdtemp()) / "profile.txt"
    for repetition in range(repetitions):
        limits.append(limit(messages))
        rates["SQLite"].append(end_to_end(messages, "", profile if repetition == 0 else None))
        print(f"sqlite: {rates['SQLite'][-1]:.1f} msg/s; limit {limits[-1]:.1f}", flush=True)
        postgres = fresh_postgres()
        if postgres is not None:
            url, name = postgres
            try:
                rates["PostgreSQL"].append(end_to_end(messages, url, None))
                print(f"postgresql: {rates['PostgreSQL'][-1]:.1f} msg/s", flush=True)
            finally:
                drop_postgres(name)
    the_limit = statistics.median(limits)
    size = "2 KB" if quick else "300 KB"
    lines = [
        "## End to end (submission to the administrator's review email)",
        "",
        f"{count} submissions of {size} from registered senders over {CONNECTIONS} SMTP "
        "connections; time from the first message sent until the last review email "
        "(and acknowledgement) is in the outbox maildir. *Limit*: the bare aiosmtpd + "
        "fsync server taking the same messages, measured in the same run, taking turns "
        f"with mailflow; median of {repetitions} (spread: slowest-fastest).",
        "",
        "| database | mailflow msg/s (spread) | limit msg/s (spread) | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {database} | {_spread(found)} | {_spread(limits)} "
        f"| {statistics.median(found) / the_limit:.2f}x |"
        for database, found in rates.items()
        if found
    ]
    lines += ["", "Goal: at least 0.6x the limit."]
    if profile is not None and profile.exists():
        lines += [
            "",
            "Profile of the SQLite run (py-spy, all busy threads of `mailflow run`): "
            "the functions that were the innermost frame most often.",
            "",
            "| function | innermost | anywhere on the stack |",
            "| --- | ---: | ---: |",
        ]
        lines += [
            f"| `{name}` | {own:.0%} | {inclusive:.0%} |"
            for name, inclusive, own in top_functions(profile)
        ]
    return lines
