"""``chronoraft chaos`` end to end: random faults for 30 s, then every invariant holds."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180


def test_chaos_run_injects_faults_and_keeps_every_invariant(tmp_path: Path) -> None:
    base = tmp_path / "chaos"
    argv = [sys.executable, "-m", "controller.cli", "chaos", "--duration", "30s"]
    argv += ["--jobs", "3", "--seed", "7", "--base-dir", str(base)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONORAFT_")}
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the tool cleans up its cluster and PostgreSQL
        try:
            output, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        output = f"(timed out after {TIMEOUT}s)\n{output}"
    if proc.returncode != 0 and (base / "logs").exists():
        shutil.copytree(base / "logs", ARTIFACTS / "logs" / "chaos", dirs_exist_ok=True)
    print(output)

    assert proc.returncode == 0, output
    assert "chaos: PASS" in output, output
    injected = re.search(r"^faults injected: (\d+)$", output, re.MULTILINE)
    assert injected and int(injected.group(1)) >= 3, output
