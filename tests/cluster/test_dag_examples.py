"""examples/dag_demo.py, the README's DAG tour, as a user runs it: a subprocess against a real
cluster, its exit code, what it prints and the DAG run it leaves behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from controller.local_cluster import LocalCluster
from tests.helpers import api

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "dag_demo.py"
CHAIN = ("Wait", "Wait5s", "Wait10s")
STARTED = {"dispatched", "running", "succeeded"}
"""States a node shows only once its parents are done."""


def _demo(
    cluster: LocalCluster, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONORAFT_")}
    token = cluster.admin_token if token is None else token
    return subprocess.run(
        [sys.executable, str(DEMO), "--url", cluster.url(), "--token", token, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _events(stdout: str) -> list[tuple[str, str]]:
    """(node, state) of every state-change line, in printed order."""
    pattern = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}\s+\+\s*\d+\.\d\ds\s+(\S+)\s+(\S+)\s+attempt")
    return [m.groups() for m in map(pattern.match, stdout.splitlines()) if m]


def test_dag_tour_runs_wait_then_wait5s_then_wait10s(shared_cluster: LocalCluster) -> None:
    proc = _demo(shared_cluster, "--time-scale", "0.2", "--timeout", "60")
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^result: DAG run \d+ succeeded$", proc.stdout, re.M), proc.stdout

    events = _events(proc.stdout)
    for parent, child in zip(CHAIN, CHAIN[1:], strict=False):
        done = events.index((parent, "succeeded"))
        first_start = min(
            i for i, (node, state) in enumerate(events) if node == child and state in STARTED
        )
        assert done < first_start, f"{child} started before {parent} succeeded: {events}"

    match = re.search(r"^dag run: (\d+)$", proc.stdout, re.M)
    assert match, proc.stdout
    status, run = api("GET", shared_cluster.url(), f"/api/v1/dag-runs/{match.group(1)}")
    assert status == 200, run
    assert run["state"] == "succeeded"
    nodes = {n["name"]: n for n in run["nodes"]}
    assert set(nodes) == set(CHAIN)
    for name in CHAIN:
        assert nodes[name]["state"] == "succeeded"
        assert nodes[name]["attempt"] == 1
    for parent, child in zip(CHAIN, CHAIN[1:], strict=False):
        finished = datetime.fromisoformat(nodes[parent]["finished_at"])
        started = datetime.fromisoformat(nodes[child]["started_at"])
        assert finished <= started, f"{child} started {started} before {parent} finished {finished}"
    slept = {
        name: (
            datetime.fromisoformat(n["finished_at"]) - datetime.fromisoformat(n["started_at"])
        ).total_seconds()
        for name, n in nodes.items()
    }
    assert slept["Wait10s"] >= 2.0 - 0.05, slept  # sleep 10 s scaled by 0.2


def test_dag_tour_exits_1_and_says_why_when_the_token_is_refused(
    shared_cluster: LocalCluster,
) -> None:
    proc = _demo(shared_cluster, "--time-scale", "0.2", token="not-a-token-of-this-cluster")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "401" in proc.stderr and "unauthorized" in proc.stderr, proc.stderr
    assert "dag run:" not in proc.stdout
