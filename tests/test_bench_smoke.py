"""The benchmarks run with tiny sizes, so that they cannot rot unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_accept_benchmark_runs_and_writes_its_table(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "accept", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    table = output.read_text()
    assert "| 2 KB | 1 |" in table and "| 2 KB | 8 |" in table


@pytest.mark.slow
def test_the_archive_benchmark_runs_and_writes_its_section(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nNotes written by hand stay.\n")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "archive", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    text = output.read_text()
    assert "Notes written by hand stay." in text
    assert "| 20 |" in text and "| 200 |" in text and "<!-- /bench:archive -->" in text
