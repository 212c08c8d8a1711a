"""`python -m bench` end to end at toy size: it runs, prints numbers, records nothing.

Speed is measured by the benchmarks, not tested here: this only guards that the suite still
starts a cluster, drives it, reads the results back and cleans up.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORD = ROOT / "docs" / "benchmarks.md"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell == "-"
    return True


@pytest.mark.cluster
def test_quick_fire_rate_prints_a_numeric_table_and_leaves_the_record_alone() -> None:
    before = _digest(RECORD)
    argv = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--only",
        "fire_rate",
        "--sizes",
        "20",
        "--warmup",
        "2",
        "--duration",
        "3",
        "--drain",
        "3",
        "--budget-minutes",
        "1.5",
        "--no-record",
    ]
    if importlib.util.find_spec("apscheduler") is None:  # the bench extra is optional
        argv.append("--no-apscheduler")
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("chronoraft ")]
    assert rows, done.stdout
    cells = rows[0][1:]
    assert len(cells) == 12 and all(_numeric(c) for c in cells), rows[0]
    assert cells[0] == "20"
    assert float(cells[2]) > 0, "no fire was recorded at all"
    stages = done.stdout.split("Where chronoraft's lateness goes", 1)
    assert len(stages) == 2, done.stdout
    stage_rows = [line.split() for line in stages[1].splitlines() if line.startswith("20 ")]
    assert len(stage_rows) == 1, stages[1]
    stage_cells = stage_rows[0][1:]
    # p50 and p99 of three stages, each a non-negative time.
    assert len(stage_cells) == 6 and all(_numeric(c) for c in stage_cells), stage_rows[0]
    assert all(float(c) >= 0 for c in stage_cells), stage_rows[0]
    assert _digest(RECORD) == before, "--no-record appended to docs/benchmarks.md"
