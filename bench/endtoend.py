"""End to end: 1,000 submissions from registered senders, from the first
message sent to the last administrator review email in the outbox, against
the limit server taking the same messages (goal: at least 0.6x its rate,
processing keeps up with acceptance). On SQLite and on PostgreSQL when one
is reachable at MAILFLOW_BENCH_POSTGRES_URL (default: the local server).

With ``profile=True`` the service is sampled by py-spy (all threads) and
the functions holding most samples are listed.

``run_processes``: the same on PostgreSQL with the spool workers as
threads and as 1, 2 and 4 worker processes (``[spool].processes``), and
on 2 hosts (two `mailflow run` on the one database, each with its
threads, the load split between them, as behind one Postfix), and
the memory of the whole process tree after start, after the run, and at
rest once the idle worker processes were replaced by fresh ones: resident
(RSS, which counts a page shared by a parent and its forked children once
in each) and proportional (PSS, each shared page divided
among the processes sharing it: what the tree costs the machine)."""

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.corpus import submission
from bench.load import send_all
from bench.servers import (
    PROCESS_IDLE_SECONDS,
    mailflow_config,
    start_mailflow,
    start_sink,
    stop,
)
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


def count_files(folder: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(folder))
    except FileNotFoundError:
        return 0


@dataclass(frozen=True)
class Memory:
    """Of a process and all its descendants, in bytes."""

    rss: int
    pss: int


@dataclass(frozen=True)
class Run:
    rate: float  # messages per second, first send to the last review email written
    at_start: Memory  # at rest, settled after start
    after: Memory  # settled after the run
    at_rest: Memory  # after the run, once idle workers were replaced (processes)
    accepted: float = 0.0  # messages per second, the load generator's: first send to last 250


SETTLE_SECONDS = 3.0


def _children_by_parent() -> dict[int, list[int]]:
    """Each process's children, from /proc."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            # "pid (name) state ppid ...": the name may hold spaces.
            parents[int(stat.rpartition(")")[2].split()[1])].append(int(entry.name))
    return parents


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    return set(_children_by_parent()[pid])


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    parents = _children_by_parent()
    found, queue = [], [pid]
    while queue:
        found.append(queue.pop())
        queue.extend(parents[found[-1]])
    return found


def _kilobytes(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in {path}")


def tree_memory(pid: int) -> Memory:
    pids = _tree(pid)
    return Memory(
        rss=sum(_kilobytes(Path(f"/proc/{p}/status"), "VmRSS") for p in pids),
        pss=sum(_kilobytes(Path(f"/proc/{p}/smaps_rollup"), "Pss") for p in pids),
    )


def end_to_end(
    messages: list[bytes],
    database_url: str,
    profile: Path | None,
    processes: int = 0,
    settle: float = 0.0,
    hosts: int = 1,
) -> Run:
    """The rate, first send to the last review email written, and the
    memory ``settle`` seconds after start and after the last email, and
    again once the idle worker processes were replaced (at rest only when
    given the time to settle). With ``hosts``, that many `mailflow run` on
    the one database, as several machines (deploy/README.md section 8):
    each its own folder, spool and SMTP port, the load split between them;
    one files folder, outbox and token key. Memory is then all of them."""
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-e2e-") as folder:
        root = Path(folder)
        register_senders(root, database_url, len(messages))
        shared = _shared(root, hosts)
        outbox = root / "var" / "outbox" / "new"
        started: list[tuple[subprocess.Popen[bytes], int]] = []
        sampler = None
        try:  # every host started is stopped, whatever fails after it started
            for number in range(hosts):
                folder_of_host = _host_folder(root, number, hosts)
                started.append(start_mailflow(folder_of_host, database_url, processes, shared))
            pids = [process.pid for process, _ in started]
            time.sleep(settle)
            at_start = hosts_memory(pids)
            sampler = _sample(pids[0], profile) if profile is not None else None
            began = time.perf_counter()
            accepted = _send_to_all([port for _, port in started], messages)
            expected = 2 * len(messages)  # an acknowledgement and a review each
            deadline = time.monotonic() + 900
            while count_files(outbox) < expected:
                stopped = any(process.poll() is not None for process, _ in started)
                if time.monotonic() > deadline or stopped:
                    raise RuntimeError(f"only {count_files(outbox)} of {expected} emails written")
                time.sleep(0.05)
            seconds = time.perf_counter() - began
            time.sleep(settle)
            after = hosts_memory(pids)
            if settle >= SETTLE_SECONDS:  # the quick smoke run does not wait for it
                time.sleep(PROCESS_IDLE_SECONDS + settle)
            at_rest = hosts_memory(pids)
        finally:
            try:
                if sampler is not None:
                    sampler.send_signal(2)
                    sampler.wait(60)
            finally:
                for process, _ in started:
                    stop(process)  # also when the profiler hangs
    return Run(len(messages) / seconds, at_start, after, at_rest, accepted)


def _host_folder(root: Path, number: int, hosts: int) -> Path:
    """One host's folder: the run's own when it is the only one."""
    if hosts == 1:
        return root
    folder = root / f"host{number}"
    folder.mkdir()
    return folder


def _shared(root: Path, hosts: int) -> str:
    """What every host of a run shares, as an NFS mount or one relay would
    be shared: where the senders' registration left them (``root``)."""
    if hosts == 1:
        return ""
    var = root / "var"
    return (
        f'\n[files]\ndir = "{var / "files"}"\n\n[outbound]\nmaildir = "{var / "outbox"}"\n'
        f'\n[security]\ntoken_key_file = "{var / "token.key"}"\n'
    )


def _send_to_all(ports: list[int], messages: list[bytes]) -> float:
    """The messages over CONNECTIONS connections in all, spread evenly over
    the hosts; the load generator's rate, first send to last 250."""
    shares = [messages[n :: len(ports)] for n in range(len(ports))]
    with ThreadPoolExecutor(len(ports)) as senders:
        loads = list(
            senders.map(
                lambda port, share: send_all(port, share, CONNECTIONS // len(ports)),
                ports,
                shares,
            )
        )
    return len(messages) / max(load.seconds for load in loads)


def hosts_memory(pids: list[int]) -> Memory:
    """Of every host's `mailflow run` and its descendants."""
    trees = [tree_memory(pid) for pid in pids]
    return Memory(rss=sum(m.rss for m in trees), pss=sum(m.pss for m in trees))


def _sample(pid: int, profile: Path) -> subprocess.Popen[bytes]:
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
            str(pid),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    return sampler


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
            stop(process)


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
        rates["SQLite"].append(end_to_end(messages, "", profile if repetition == 0 else None).rate)
        print(f"sqlite: {rates['SQLite'][-1]:.1f} msg/s; limit {limits[-1]:.1f}", flush=True)
        # Quick (the smoke test): PostgreSQL's path is run by `bench processes --quick`.
        postgres = None if quick else fresh_postgres()
        if postgres is not None:
            url, name = postgres
            try:
                rates["PostgreSQL"].append(end_to_end(messages, url, None).rate)
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


# How the spool is worked: worker threads (0), or processes; and on how many hosts.
WAYS = {
    "threads (2)": (0, 1),
    "1 process": (1, 1),
    "2 processes": (2, 1),
    "4 processes": (4, 1),
    "2 hosts, threads (2) each": (0, 2),
}
# Enough for the smoke test to run every part.
QUICK_WAYS = ("threads (2)", "2 processes", "2 hosts, threads (2) each")


def run_processes(quick: bool, count: int = 1_000, repetitions: int = 3) -> list[str]:
    """PostgreSQL end to end and memory at rest, worker threads against 1,
    2 and 4 worker processes, interleaved with the limit."""
    if quick:
        count, repetitions = 10, 1
    size = 2_000 if quick else 300_000
    settle = 0.5 if quick else SETTLE_SECONDS
    messages = [submission(n, size) for n in range(count)]
    limits: list[float] = []
    ways = {way: n for way, n in WAYS.items() if not quick or way in QUICK_WAYS}
    runs: dict[str, list[Run]] = {way: [] for way in ways}
    for _ in range(repetitions):
        limits.append(limit(messages))
        print(f"limit {limits[-1]:.1f} msg/s", flush=True)
        for way, (processes, hosts) in ways.items():
            postgres = fresh_postgres()
            if postgres is None:
                return ["## Worker processes", "", "PostgreSQL was not reachable: not measured."]
            url, name = postgres
            try:
                runs[way].append(end_to_end(messages, url, None, processes, settle, hosts))
            finally:
                drop_postgres(name)
            found = runs[way][-1]
            print(
                f"{way}: {found.rate:.1f} msg/s, PSS at start {found.at_start.pss / MB:.0f} MB, "
                f"after {found.after.pss / MB:.0f} MB",
                flush=True,
            )
    return _processes_section(runs, limits, count, size, repetitions, settle)


MB = 1_000_000


def _processes_section(
    runs: dict[str, list[Run]],
    limits: list[float],
    count: int,
    size: int,
    repetitions: int,
    settle: float,
) -> list[str]:
    the_limit = statistics.median(limits)
    threads = runs["threads (2)"]

    def median_mb(found: list[Run], memory: str, kind: str) -> float:
        return statistics.median(getattr(getattr(r, memory), kind) for r in found) / MB

    lines = [
        "## Worker processes (PostgreSQL)",
        "",
        f"{count} submissions of {size // 1000} KB from registered senders over {CONNECTIONS} "
        "SMTP connections on PostgreSQL, as in the end-to-end section, with the spool "
        "workers as the default 2 threads and as `[spool].processes` = 1, 2 and 4, and on "
        "2 hosts: two `mailflow run` on the one database, each with its own spool, SMTP "
        "port and 2 worker threads, the connections split between them, one files folder "
        "and outbox (deploy/README.md section 8; on this one machine they share its cores); the "
        f"limit measured in the same run, taking turns; median of {repetitions} "
        "(spread: slowest-fastest). Memory is of `mailflow run` and all its child "
        f"processes, {settle:g} s after start, {settle:g} s after the last email, and "
        f"at rest: {PROCESS_IDLE_SECONDS + settle:g} s later, once each worker process idle "
        f"for `[spool].process_idle_seconds` (here {PROCESS_IDLE_SECONDS} s) has made way "
        "for a fresh one and the worker threads have handed their free heap back. RSS "
        "counts a page shared after a fork once in every process, PSS divides it among them.",
        "",
        "| workers | msg/s (spread) | ratio to limit | PSS MB at start / after / at rest "
        "| PSS vs threads at start / after / at rest | RSS MB at start / after / at rest |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    moments = ("at_start", "after", "at_rest")
    for way, found in runs.items():
        rates = [r.rate for r in found]
        pss = [median_mb(found, moment, "pss") for moment in moments]
        rss = [median_mb(found, moment, "rss") for moment in moments]
        versus = [pss[n] / median_mb(threads, moment, "pss") for n, moment in enumerate(moments)]
        lines.append(
            f"| {way} | {_spread(rates)} | {statistics.median(rates) / the_limit:.2f}x "
            f"| {' / '.join(f'{mb:.0f}' for mb in pss)} "
            f"| {' / '.join(f'{ratio:.2f}x' for ratio in versus)} "
            f"| {' / '.join(f'{mb:.0f}' for mb in rss)} |"
        )
    lines += [
        "",
        f"Limit: {_spread(limits)} msg/s. Goals: memory at rest with processes at most "
        "1.5x that of threads; at least 0.6x the limit with all cores.",
    ]
    return lines
