"""The report benchmark: `mailflow report` over an archive of 100,000
published cases (seeded through mailflow's own publishing code), time and
peak memory of building it, on SQLite, in-process."""

from __future__ import annotations

import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.archive import fresh_app
from bench.seed import seed_published
from mailflow import report


def measure(cases: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-report-") as folder:
        app = fresh_app(Path(folder))
        try:
            seed_published(app, cases)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            with app.database.reading() as session:
                built = report.build_report(
                    session,
                    app.workflow.economies,
                    app.workflow.flows,
                    datetime(2000, 1, 1, tzinfo=UTC),
                    datetime.now(UTC),
                )
            text = report.as_text(built)
            seconds = time.perf_counter() - started
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
            assert built.submitted == cases and text
            print(f"{cases} cases: report in {seconds:.2f} s", flush=True)
            return {"cases": cases, "seconds": seconds, "grown_mb": grown / 1024}
        finally:
            app.database.dispose()


def run_report(quick: bool) -> list[str]:
    rows = [measure(size) for size in ((200,) if quick else (1_000, 100_000))]
    lines = [
        "## Report",
        "",
        "`mailflow report` (text) over every case, all of them published, on SQLite, "
        "in-process (`bench/report.py`). Memory is how much the process's peak resident "
        "size grew while the report was built (counts are SQL aggregates; the list of "
        "published cases is the one thing that grows with the archive).",
        "",
        "| cases | seconds | peak memory growth MB |",
        "| ---: | ---: | ---: |",
    ]
    lines += [f"| {int(r['cases']):,} | {r['seconds']:.2f} | {r['grown_mb']:.0f} |" for r in rows]
    return lines
