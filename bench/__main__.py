"""``python -m bench accept|archive|all [--quick]``: each benchmark writes
its own section of docs/benchmarks.md and leaves the rest of the file (the
other sections, the notes written by hand) as it is.

accept: durable accept of mailflow's SMTP ingress against the bare
aiosmtpd + fsync limit; servers run as subprocesses on 127.0.0.1 and stop
by themselves. archive: full build and one incremental publish. fanout:
one digest period for up to 100,000 subscribers. memory: peak RSS while a
25 MB message arrives. mailman: side by side with GNU Mailman 3, installed
once into a virtual environment of its own."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench.archive import run_archive
from bench.corpus import submission
from bench.endtoend import run_endtoend, run_processes
from bench.fanout import run_fanout
from bench.load import LoadResult, send_all
from bench.mailman import run_mailman
from bench.memory import run_memory
from bench.report import run_report
from bench.servers import ROOT, start_mailflow, start_sink, stop


def measure(server: str, messages: list[bytes], connections: int) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-") as folder:
        start = start_sink if server == "limit" else start_mailflow
        process, port = start(Path(folder))
        try:
            return send_all(port, messages, connections)
        finally:
            stop(process)


def run_accept(count: int, sizes: list[int], repetitions: int) -> list[AcceptRow]:
    rows = []
    for size in sizes:
        messages = [submission(n, size) for n in range(count)]
        for connections in (1, 8):
            figures: dict[str, list[LoadResult]] = {"limit": [], "mailflow": []}
            for _ in range(repetitions):
                for server in ("limit", "mailflow"):  # interleaved: drift hits both
                    figures[server].append(measure(server, messages, connections))
                    print(
                        f"{size // 1000} KB x{connections} {server}: "
                        f"{figures[server][-1].per_second:.1f} msg/s",
                        flush=True,
                    )
            rows.append(_row(size, connections, figures))
    return rows


@dataclass(frozen=True)
class AcceptRow:
    """One line of the accept table: medians over the repetitions."""

    size: int
    connections: int
    limit: float  # msg/s
    limit_spread: str  # slowest-fastest run
    mailflow: float
    mailflow_spread: str
    mb: float  # mailflow's MB/s
    p50: float  # ms
    p99: float
    ratio: float


def _row(size: int, connections: int, figures: dict[str, list[LoadResult]]) -> AcceptRow:
    def rates(server: str) -> list[float]:
        return [r.per_second for r in figures[server]]

    mailflow = figures["mailflow"]
    return AcceptRow(
        size=size,
        connections=connections,
        limit=statistics.median(rates("limit")),
        limit_spread=f"{min(rates('limit')):.1f}-{max(rates('limit')):.1f}",
        mailflow=statistics.median(rates("mailflow")),
        mailflow_spread=f"{min(rates('mailflow')):.1f}-{max(rates('mailflow')):.1f}",
        mb=statistics.median(r.megabytes_per_second for r in mailflow),
        p50=statistics.median(r.percentile(0.5) for r in mailflow) * 1000,
        p99=statistics.median(r.percentile(0.99) for r in mailflow) * 1000,
        ratio=statistics.median(rates("mailflow")) / statistics.median(rates("limit")),
    )


def accept_section(rows: list[AcceptRow], count: int, repetitions: int) -> list[str]:
    lines = [
        "## Durable accept (SMTP ingress to 250, message fsynced)",
        "",
        f"{count} submissions per run, connections reused, median of {repetitions} runs "
        "(spread: slowest-fastest run). *Limit* is a bare aiosmtpd server that only "
        "writes and fsyncs each message (`bench/sink.py`); *mailflow* is `mailflow run` on "
        "the default configuration, its workers processing the spool at the same time. "
        "Latency is the DATA phase (content sent until 250), measured by the client.",
        "",
        "| size | conns | limit msg/s (spread) | mailflow msg/s (spread) | mailflow MB/s "
        "| p50 ms | p99 ms | ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.size // 1000} KB | {r.connections} | {r.limit:.1f} ({r.limit_spread}) "
            f"| {r.mailflow:.1f} ({r.mailflow_spread}) "
            f"| {r.mb:.1f} | {r.p50:.0f} | {r.p99:.0f} | {r.ratio:.2f}x |"
        )
    return lines


def write_section(path: Path, name: str, lines: list[str], command: str) -> None:
    """Replace the named section between its markers (or add it at the end)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    measured = (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, aiosmtpd {version('aiosmtpd')}, "
        f"SQLAlchemy {version('sqlalchemy')}. Reproduce: `{command}`."
    )
    block = "\n".join([start, *lines, "", measured, end])
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


# Each writes its own section of the doc; `accept` (below) has options of its own.
SECTIONS: dict[str, Callable[[bool], list[str]]] = {
    "endtoend": run_endtoend,
    "processes": run_processes,
    "archive": run_archive,
    "fanout": run_fanout,
    "memory": run_memory,
    "report": run_report,
    "mailman": run_mailman,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("benchmark", choices=["accept", *SECTIONS, "all"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    quick = " --quick" if args.quick else ""
    if args.benchmark in ("accept", "all"):
        count, sizes, repetitions = (
            (4, [2_000], 1) if args.quick else (100, [300_000, 2_000_000], 3)
        )
        rows = run_accept(count, sizes, repetitions)
        write_section(
            args.output,
            "accept",
            accept_section(rows, count, repetitions),
            f"python -m bench accept{quick}",
        )
    for name, run in SECTIONS.items():
        if args.benchmark in (name, "all"):
            write_section(args.output, name, run(args.quick), f"python -m bench {name}{quick}")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
