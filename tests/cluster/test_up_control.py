"""``chronoraft up start|stop|restart NODE`` and ``up status``: one node of a running ``up``
brought back after ``kill -9``, stopped and started on request, as an operator does from a
second terminal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controller.local_cluster import free_port_block, http_json
from tests.helpers import wait_until

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningUp:
    """A ``chronoraft up`` subprocess, its printed output in a file, and its flags."""

    proc: subprocess.Popen[bytes]
    out: Path
    base_dir: Path
    http_base: int
    env: dict[str, str]
    read_token: str = ""

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def control(self, *words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "controller.cli", "up", "--base-dir", str(self.base_dir),
             *words],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def cluster_info(self, controller: int) -> dict[str, Any] | None:
        url = f"http://127.0.0.1:{self.http_base + controller - 1}/api/v1/cluster"
        try:
            status, body = http_json("GET", url, timeout=2.0, token=self.read_token)
        except OSError:
            return None
        return body if status == 200 else None

    def pids(self) -> dict[str, int | None]:
        """NODE -> PID from ``up status`` (None for a node that is down)."""
        result = self.control("status")
        assert result.returncode == 0, result.stderr
        rows = [line.split() for line in result.stdout.splitlines()[1:]]
        return {row[0]: (int(row[3]) if row[3] != "-" else None) for row in rows}


@pytest.fixture
def running_up(database_url: str, tmp_path: Path) -> Iterator[RunningUp]:
    ports = free_port_block(20)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONORAFT_")}
    env["CHRONORAFT_DATABASE_URL"] = database_url
    out = tmp_path / "up.out"
    base = tmp_path / "up"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "controller.cli", "up", "--controllers", "3",
                "--workers", "1", "--base-dir", str(base), "--http-base", str(ports),
                "--raft-base", str(ports + 5), "--grpc-base", str(ports + 10),
                "--worker-base", str(ports + 15), "--worker-http-base", str(ports + 18),
                "--no-examples",
            ],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    up = RunningUp(proc, out, base, ports, env)
    try:
        wait_until("up to be ready", lambda: "Ctrl-C stops everything" in up.output(), 120)
        up.read_token = up.output().split("read token:")[1].split()[0]
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _leader(up: RunningUp) -> str:
    def find() -> str | None:
        for i in (1, 2, 3):
            info = up.cluster_info(i)
            if info and info["node"]["role"] == "leader" and info["node"]["leading_epoch"]:
                return f"c{i}"
        return None

    return wait_until("a leader", find, 30)


def test_a_killed_leader_is_started_again_and_follows_the_new_one(running_up: RunningUp) -> None:
    up = running_up
    old = _leader(up)
    pid = up.pids()[old]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(
        "up to report the killed node",
        lambda: f"{old} (pid {pid}) ended: killed by SIGKILL" in up.output(),
        30,
    )
    assert f"start {old}` starts it again" in up.output()
    assert up.pids()[old] is None
    new = _leader(up)
    assert new != old

    started = up.control("start", old)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith(f"started {old} (pid ")
    assert "connected to every running peer" in started.stdout
    # It returned once the node was back: a follower that knows the leader, every peer up.
    info = up.cluster_info(int(old[1:]))
    assert info is not None and info["node"]["role"] == "follower"
    assert info["raft"]["leader"] is not None
    assert len(info["peers"]) == 2 and all(peer["connected"] for peer in info["peers"])
    assert _leader(up) == new
    assert up.pids()[old] not in (None, pid)


def test_stop_and_start_on_request_are_not_reported_as_deaths(running_up: RunningUp) -> None:
    up = running_up
    follower = next(f"c{i}" for i in (1, 2, 3) if f"c{i}" != _leader(up))
    stopped = up.control("stop", follower)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"stopped {follower} (pid ")
    assert "exit code 0" in stopped.stdout
    again = up.control("stop", follower)
    assert again.returncode == 0 and again.stdout.strip() == f"{follower} is not running"
    assert up.control("start", follower).returncode == 0

    before = time.time()
    restarted = up.control("restart", "w1")
    assert restarted.returncode == 0, restarted.stderr
    assert "stopped w1" in restarted.stdout and "registered with the leader" in restarted.stdout
    # The new process has heartbeated, not just the old one's entry still listed (draining).
    leader_info = up.cluster_info(int(_leader(up)[1:]))
    assert leader_info is not None
    (w1,) = [w for w in leader_info["workers"] if w["id"] == "w1"]
    assert not w1["draining"]
    assert datetime.fromisoformat(w1["last_heartbeat"]).timestamp() >= before
    # A kill -9 after them is reported; the stops asked for before it never are.
    worker_pid = up.pids()["w1"]
    assert worker_pid is not None
    os.kill(worker_pid, signal.SIGKILL)
    wait_until("up to report w1", lambda: f"w1 (pid {worker_pid}) ended" in up.output(), 30)
    assert up.output().count("ended:") == 1


def test_requests_it_cannot_carry_out_fail_with_the_reason(running_up: RunningUp) -> None:
    up = running_up
    unknown = up.control("start", "c9")
    assert unknown.returncode == 1
    assert "no node 'c9' in this cluster: one of c1, c2, c3, w1" in unknown.stderr
    assert up.control("start").returncode == 2

    follower = next(f"c{i}" for i in (1, 2, 3) if f"c{i}" != _leader(up))
    pid = up.pids()[follower]
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        shows_pause = lambda: " paused " in up.control("status").stdout  # noqa: E731
        wait_until("status to show the pause", shows_pause, 30)
        paused = up.control("start", follower)
        assert paused.returncode == 1
        assert f"{follower} is paused (pid {pid}): kill -CONT {pid}" in paused.stderr
    finally:
        os.kill(pid, signal.SIGCONT)

    # A node that cannot come back (its API port taken meanwhile) is reported as it ends.
    assert up.control("stop", follower).returncode == 0
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past its TIME_WAITs
        squatter.bind(("127.0.0.1", up.http_base + int(follower[1:]) - 1))
        squatter.listen()
        failed = up.control("start", follower)
    assert failed.returncode == 1
    assert f"{follower} (pid " in failed.stderr
    assert "ended as it started (exit code 2)" in failed.stderr
    log = (up.base_dir / "logs" / f"{follower}.log").read_text()
    assert "controller cannot start: cannot serve the API on 127.0.0.1:" in log
    assert up.control("start", follower).returncode == 0

    second = subprocess.run(
        [sys.executable, "-m", "controller.cli", "up", "--base-dir", str(up.base_dir)],
        cwd=ROOT, env=up.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 1
    assert "another chronoraft up is running" in second.stdout

    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=60) == 0
    assert not (up.base_dir / "control.sock").exists()
    gone = up.control("status")
    assert gone.returncode == 1 and "no `chronoraft up` is running" in gone.stderr
