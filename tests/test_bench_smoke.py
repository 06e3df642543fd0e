"""The benchmarks run with tiny sizes, so that they cannot rot unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.mailman_site import VENV, installed

ROOT = Path(__file__).resolve().parents[1]


def run_quick(benchmark: str, output: Path) -> str:
    """Run one benchmark with tiny sizes; returns what it wrote."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", benchmark, "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return output.read_text()


@pytest.mark.slow
def test_the_accept_benchmark_runs_and_writes_its_table(tmp_path: Path) -> None:
    table = run_quick("accept", tmp_path / "benchmarks.md")
    assert "| 2 KB | 1 |" in table and "| 2 KB | 8 |" in table


@pytest.mark.slow
def test_the_archive_benchmark_runs_and_writes_its_section(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nNotes written by hand stay.\n")
    text = run_quick("archive", output)
    assert "Notes written by hand stay." in text
    assert "| 20 |" in text and "| 200 |" in text and "<!-- /bench:archive -->" in text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("benchmark", "shown"),
    [
        ("fanout", ("| 200 |",)),
        ("memory", ("peak above idle",)),
        ("endtoend", ("| SQLite |",)),
        ("processes", ("| 2 processes |", "| 2 hosts, threads (2) each |")),
        ("report", ("| 200 |",)),
    ],
)
def test_each_benchmark_runs_and_writes_its_section(
    benchmark: str, shown: tuple[str, ...], tmp_path: Path
) -> None:
    text = run_quick(benchmark, tmp_path / "benchmarks.md")
    assert all(row in text for row in shown) and f"<!-- /bench:{benchmark} -->" in text


@pytest.mark.slow
def test_the_mailman_benchmark_runs_where_asked(tmp_path: Path) -> None:
    """Side by side with GNU Mailman: only with MAILFLOW_TEST_MAILMAN=1 and
    Mailman's virtual environment installed by `python -m bench mailman`
    (it takes the network and a minute, and the run half a minute more,
    which the suite must not spend on every machine that once ran it)."""
    if os.environ.get("MAILFLOW_TEST_MAILMAN") != "1":
        pytest.skip("MAILFLOW_TEST_MAILMAN=1 runs it")
    if not installed():
        pytest.skip(f"no Mailman at {VENV}: python -m bench mailman installs it")
    text = run_quick("mailman", tmp_path / "benchmarks.md")
    assert "| GNU Mailman, SQLite |" in text and "| mailflow, SQLite |" in text
