"""The digest fan-out benchmark: one digest period written to the outbox
for N subscribers (every one of them with something new), in-process, on
SQLite. The figure is digests written per second, with the batch progress
that `mailflow digest send` shows."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.archive import fresh_app
from bench.seed import seed_published, seed_subscribers


def measure(subscribers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-fanout-") as folder:
        app = fresh_app(Path(folder))
        try:
            seed_subscribers(app, subscribers)
            seed_published(app, 8)
            digests = app.timed.digests
            digests.start_now()
            started = time.perf_counter()
            done = digests.fan_out()
            seconds = time.perf_counter() - started
            assert done.sent == subscribers
            print(f"{subscribers} subscribers: {seconds:.1f} s", flush=True)
            return {"subscribers": subscribers, "seconds": seconds}
        finally:
            app.database.dispose()


def run_fanout(quick: bool) -> list[str]:
    sizes = (200,) if quick else (1_000, 10_000, 100_000)
    rows = [measure(size) for size in sizes]
    lines = [
        "## Digest fan-out",
        "",
        "One digest period written to the outbox (rendered, composed, one row "
        "each, 500 subscribers a transaction) for every subscriber, each with 8 new "
        "cases; SQLite, in-process (`bench/fanout.py`). Sending the outbox is not "
        "included: that is the transport's pace.",
        "",
        "| subscribers | seconds | digests/s | ms per digest |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['subscribers']):,} | {r['seconds']:.1f} "
            f"| {r['subscribers'] / r['seconds']:.0f} "
            f"| {r['seconds'] * 1000 / r['subscribers']:.1f} |"
        )
    return lines
