"""The archive benchmark: a full build at 10,000 cases, and one incremental
publish into an archive of 100 and of 10,000 cases (goal: about the same
cost, at most 1.5x apart). In-process, on SQLite, in a temporary folder."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.seed import seed_published
from mailflow.app import App, build
from mailflow.config import load_settings

PUBLISHES = 7


def fresh_app(folder: Path) -> App:
    config = folder / "config.toml"
    config.write_text("[archive]\nhttp_port = 0\n\n[monitor]\nhttp_port = 0\n")
    return build(load_settings(config, environ={}))


def measure(size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-archive-") as folder:
        app = fresh_app(Path(folder))
        try:
            started = time.perf_counter()
            seed_published(app, size)
            print(f"{size} cases seeded in {time.perf_counter() - started:.0f} s", flush=True)
            started = time.perf_counter()
            app.site.build(app.database)
            full = time.perf_counter() - started
            files = sum(1 for p in app.settings.archive.output_dir.rglob("*") if p.is_file())
            publishes = []
            for number in range(PUBLISHES):
                seed_published(app, 1, seed=10_000 + number)  # the case, untimed
                started = time.perf_counter()
                assert app.update_archive() == 1
                publishes.append(time.perf_counter() - started)
            publish = statistics.median(publishes) * 1000
            print(f"{size} cases: build {full:.1f} s, publish {publish:.0f} ms", flush=True)
            return {
                "size": size,
                "build": full,
                "files": files,
                "publish": publish,
                "fastest": min(publishes) * 1000,
                "slowest": max(publishes) * 1000,
            }
        finally:
            app.database.dispose()


def run_archive(quick: bool) -> list[str]:
    sizes = (20, 200) if quick else (100, 1_000, 10_000)
    small, large = sizes[0], sizes[-1]
    rows = [measure(size) for size in sizes]
    ratio = rows[-1]["publish"] / rows[0]["publish"]
    lines = [
        "## Archive (static site)",
        "",
        f"SQLite, cases seeded through mailflow's own publishing code (`bench/seed.py`). "
        f"*Build* is `mailflow archive build` from scratch; *publish* is one more case "
        f"published and its pages rewritten (`Site.catch_up`, each file fsynced), median of "
        f"{PUBLISHES} (spread: fastest-slowest).",
        "",
        "| cases | full build s | files | build cases/s | one publish ms (spread) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['size']):,} | {r['build']:.1f} | {int(r['files']):,} "
            f"| {r['size'] / r['build']:.0f} | {r['publish']:.0f} "
            f"({r['fastest']:.0f}-{r['slowest']:.0f}) |"
        )
    lines += [
        "",
        f"One publish at {large:,} cases costs **{ratio:.2f}x** what it costs at {small:,} "
        "(goal: at most 1.5x).",
    ]
    return lines
