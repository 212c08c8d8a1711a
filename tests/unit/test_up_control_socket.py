"""The control socket of ``chronoraft up`` without any node running: its protocol, its
answers to what it cannot do, and the client's exit codes. (Starting and stopping real nodes
is in tests/cluster/test_up_control.py.)"""

from __future__ import annotations

import json
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.local_cluster import LocalCluster
from controller.up_control import ControlServer, NodeControl, another_up_running, request


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, LocalCluster]]:
    cluster = LocalCluster(base_dir=tmp_path, database_url="postgresql://unused", workers=1)
    server = ControlServer(tmp_path, NodeControl(cluster, threading.Lock(), start_wait=2.0))
    server.start()
    try:
        yield tmp_path, cluster
    finally:
        server.close()


def _raw(base: Path, line: bytes) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(base / "control.sock"))
        conn.sendall(line)
        return json.loads(conn.makefile("rb").readline())


def test_the_socket_is_private_and_marks_the_base_dir_as_taken(
    served: tuple[Path, LocalCluster],
) -> None:
    base, _ = served
    mode = (base / "control.sock").stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert another_up_running(base)


def test_a_socket_left_by_a_killed_up_is_not_taken_for_a_live_one(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(tmp_path / "control.sock"))  # bound, never listening: nobody answers
    assert not another_up_running(tmp_path)
    assert not (tmp_path / "control.sock").exists()


def test_requests_it_cannot_carry_out_get_the_reason(
    served: tuple[Path, LocalCluster], capsys: pytest.CaptureFixture[str]
) -> None:
    base, _ = served
    assert _raw(base, b"not json\n") == {"ok": False, "message": "malformed request"}
    assert _raw(base, b'{"action": "start"}\n')["message"] == "malformed request"
    assert _raw(base, b'{"action": "reboot", "node": "c1"}\n') == {
        "ok": False,
        "message": "unknown action 'reboot': one of start, stop, restart, status",
    }
    assert request(base, "start", "c9") == 1
    assert "no node 'c9' in this cluster: one of c1, c2, c3, w1" in capsys.readouterr().err
    assert request(base, "stop", "c1") == 0  # never started: nothing to stop
    assert capsys.readouterr().out.strip() == "c1 is not running"


def test_a_failure_inside_up_is_answered_not_swallowed(
    served: tuple[Path, LocalCluster], capsys: pytest.CaptureFixture[str]
) -> None:
    base, cluster = served
    cluster.nodes["w1"].log_path = base / "no-such-dir" / "w1.log"  # the start cannot open it
    assert request(base, "start", "w1") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: start w1 failed: ") and "No such file or directory" in err
    assert request(base, "status", "") == 0  # up still serves
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["NODE", "KIND", "ROLE", "PID", "URL", "LOAD"]
    assert [line.split()[:3] for line in table.splitlines()[1:4]] == [
        ["c1", "controller", "down"],
        ["c2", "controller", "down"],
        ["c3", "controller", "down"],
    ]
    assert table.splitlines()[4].split()[-1] == "down"


def test_without_a_running_up_the_client_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert request(tmp_path, "status", "") == 1
    assert "no `chronoraft up` is running with base dir" in capsys.readouterr().err
    assert request(tmp_path, "restart", "") == 2
    assert "needs a node name" in capsys.readouterr().err
