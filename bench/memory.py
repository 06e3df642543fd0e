"""The memory benchmark: peak RSS of `mailflow run` while one message of
about 25 MB arrives over SMTP and is processed (goal: at most 3x the
message size above the idle RSS). Peak RSS is the kernel's high-water mark
(VmHWM), reset after start-up through /proc/PID/clear_refs."""

from __future__ import annotations

import smtplib
import statistics
import tempfile
import time
from pathlib import Path

from bench.corpus import submission
from bench.servers import start_mailflow, stop

MB = 1_000_000


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


def measure(attachment_bytes: int) -> dict[str, float]:
    raw = submission(1, attachment_bytes)
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-memory-") as folder:
        process, port = start_mailflow(Path(folder))
        try:
            time.sleep(2)  # settled: workers polling, nothing to do
            idle = _status(process.pid, "VmRSS")
            Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # reset VmHWM
            with smtplib.SMTP("127.0.0.1", port, timeout=300) as smtp:
                smtp.sendmail("bench@example.org", ["submit@mailflow.localhost"], raw)
                accepted = _status(process.pid, "VmHWM")  # at the 250
            outbox = Path(folder) / "var" / "outbox" / "new"
            deadline = time.monotonic() + 300
            while not (outbox.is_dir() and any(outbox.iterdir())):
                if time.monotonic() > deadline:
                    raise RuntimeError("the message was not processed in 5 minutes")
                time.sleep(0.2)
            peak = _status(process.pid, "VmHWM")
        finally:
            stop(process)
    print(
        f"{len(raw) / MB:.1f} MB message: idle {idle / MB:.0f} MB, at 250 "
        f"{accepted / MB:.0f} MB, processed {peak / MB:.0f} MB"
    )
    return {"size": len(raw), "idle": idle, "accepted": accepted, "peak": peak}


def run_memory(quick: bool) -> list[str]:
    repetitions = 1 if quick else 3
    runs = [measure(200_000 if quick else 18_000_000) for _ in range(repetitions)]
    size = runs[0]["size"]
    idle = statistics.median(r["idle"] for r in runs)

    def row(stage: str, key: str) -> str:
        above = [r[key] - r["idle"] for r in runs]
        middle = statistics.median(above)
        return (
            f"| {stage} | {size / MB:.1f} | {idle / MB:.0f} "
            f"| {middle / MB:.0f} MB ({min(above) / MB:.0f}-{max(above) / MB:.0f}) "
            f"| {middle / size:.1f}x |"
        )

    return [
        "## Memory while a large message arrives",
        "",
        "`mailflow run` on the default configuration; one submission with a PDF "
        "attachment sent over SMTP. Peak is the kernel's high-water mark of resident "
        "memory, reset after start-up: read once at the 250 (arrival: the workers may "
        "just have begun), and once the message is processed (parsed, stored, "
        f"confirmation written). Median of {repetitions} runs, each a fresh service "
        "(spread: lowest-highest).",
        "",
        "| until | message MB | idle RSS MB | peak above idle (spread) | per message byte |",
        "| --- | ---: | ---: | ---: | ---: |",
        row("250 (arrival)", "accepted"),
        row("processed", "peak"),
        "",
        "Goal: at most 3x the message size above idle while it arrives.",
    ]
