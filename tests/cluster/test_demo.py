"""``chronoraft demo failover`` as an operator runs it: a subprocess, its printed timeline and
its exit code (0 only when no slot around the kill was missed or doubled)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.local_cluster import LocalCluster

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
TIMELINE = [
    r"t-\d+\.\d{3}s  last dispatch by c\d \(epoch \d+\)",
    r"t\+0\.000s  SIGKILL c\d \(pid \d+\), the leader of epoch \d+",
    r"t\+\d+\.\d{3}s  new leader: c\d claims epoch \d+",
    r"t\+\d+\.\d{3}s  next dispatch by c\d \(epoch \d+\): slot \d\d:\d\d:\d\d",
    r"t\+\d+\.\d{3}s  still firing: \d+ runs dispatched by c\d since the kill",
    r"runs around the kill",
    r"-- SIGKILL",
    r"verdict: \d+ slots .*: 0 missed, 0 doubled",
    r"result: no slot missed or doubled",
]


def _demo(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONORAFT_")}
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "demo", "failover", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _assert_timeline(proc: subprocess.CompletedProcess[str]) -> None:
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for pattern in TIMELINE:
        assert re.search(pattern, proc.stdout), f"missing {pattern!r} in:\n{proc.stdout}"


def test_demo_failover_on_its_own_cluster_prints_the_timeline_and_cleans_up() -> None:
    proc = _demo("--observe", "4", timeout=150)
    _assert_timeline(proc)
    assert "stopped and removed" in proc.stdout
    for pid in re.findall(r"\(pid (\d+)", proc.stdout):
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def test_demo_failover_against_a_running_cluster_kills_its_leader(make_cluster: Any) -> None:
    cluster: LocalCluster = make_cluster(workers=1)
    leader = cluster.leader()
    assert leader
    urls = ",".join(cluster.url(n) for n in cluster.controller_names)
    proc = _demo("--url", urls, "--token", cluster.admin_token, "--observe", "3", timeout=120)
    _assert_timeline(proc)
    killed = re.search(r"SIGKILL (c\d) \(pid (\d+)\)", proc.stdout)
    assert killed, proc.stdout
    name, pid = killed.group(1), int(killed.group(2))
    assert cluster.nodes[name].pid == pid
    assert cluster.nodes[name].proc.wait(timeout=10) == -9
    assert name == leader or cluster.leader() != name
