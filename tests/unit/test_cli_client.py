"""The ``chronoraft`` client commands without a cluster: input they refuse before sending
anything, how they show a job, when ``runs tail`` stops, and a reader that leaves early."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller import cli
from controller.cli_client import cluster, jobs, runs

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "http://127.0.0.1:9"  # nothing may be sent; if it were, this refuses it


def create(*args: str) -> int:
    return cli.main(["jobs", "create", "--url", NOWHERE, "--token", "t" * 16, *args])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_jobs_create_from_a_missing_file_is_an_error_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "job.json"
    assert create("--file", str(missing), "--schedule", "@every 1m") == 1
    line = one_error_line(capsys)
    assert line == f"error: --file {missing}: No such file or directory"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"name": "a",', "not JSON"),
        (b'["name", "a"]', "must hold one JSON object"),
        (b'{"name": "caf\xe9"}', "not UTF-8 text"),
    ],
)
def test_jobs_create_from_an_unusable_file_says_what_is_wrong_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    path = tmp_path / "job.json"
    path.write_bytes(content)
    assert create("--file", str(path)) == 1
    line = one_error_line(capsys)
    assert line.startswith(f"error: --file {path}: {expected}")


def test_jobs_create_from_a_directory_is_an_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert create("--file", str(tmp_path)) == 1
    assert one_error_line(capsys).startswith(f"error: --file {tmp_path}: ")


def test_a_malformed_env_pair_is_an_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert create("--name", "a", "--env", "NOEQUALS") == 1
    assert one_error_line(capsys) == "error: --env 'NOEQUALS': expected KEY=VALUE"


def test_flags_override_the_fields_of_the_job_file(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"name": "a", "schedule": "@hourly", "env": {"A": "1"}}))
    args = cli.build_parser().parse_args(
        ["jobs", "create", "--file", str(path), "--schedule", "@every 1m", "--env", "B=2"]
    )
    assert jobs.job_body(args) == {
        "name": "a",
        "schedule": "@every 1m",
        "env": {"A": "1", "B": "2"},
    }


def test_jobs_show_spells_every_configured_duration_as_the_api_accepts_it() -> None:
    job = {
        "id": 5,
        "name": "backup",
        "paused": False,
        "schedule": "*/30 * * * * *",
        "timezone": "UTC",
        "next_run_at": None,
        "command": "echo hi",
        "args": None,
        "timeout": 300.0,
        "max_retries": 2,
        "retry_backoff": 10.0,
        "overlap": "allow",
        "catchup": "all",
        "catchup_window": 5400.0,
    }
    shown = jobs.render_job(job)
    assert "timeout:     5m\n" in shown
    assert "retries:     2 (backoff 10s)\n" in shown
    assert "catchup:     all within 1h30m\n" in shown


class OneRun:
    """A client whose run is always in the same state."""

    def __init__(self, state: str) -> None:
        self.state = state

    def get(self, path: str) -> dict[str, Any]:
        return {
            "id": 7,
            "state": self.state,
            "attempt": 1,
            "worker_id": None,
            "epoch": None,
            "attempts": [],
        }


@pytest.mark.parametrize(
    ("state", "code"), [("succeeded", 0), ("failed", 1), ("upstream_failed", 1)]
)
def test_runs_tail_stops_at_every_final_state(
    state: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(run=7, timeout=0.5, interval=0.01, json=False)
    assert runs.cmd_tail(OneRun(state), args) == code  # type: ignore[arg-type]
    assert f"{state} (attempt 1)" in capsys.readouterr().out


@pytest.fixture
def many_jobs_api() -> Iterator[str]:
    """An API that lists far more jobs than a pipe holds, so the CLI blocks writing them."""
    page = {
        "items": [
            {
                "id": i,
                "name": f"job-{i:05d}",
                "schedule": "@every 5s",
                "timezone": "UTC",
                "paused": False,
                "next_run_at": None,
                "last_run": None,
            }
            for i in range(1, 5001)
        ],
        "total": 5000,
    }
    body = json.dumps(page).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_reader_that_leaves_early_ends_the_cli_quietly(many_jobs_api: str) -> None:
    """``chronoraft jobs list | head -1``: no BrokenPipeError traceback, now or at exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONORAFT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "jobs", "list", "--url", many_jobs_api],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=30)
    assert first.split()[:2] == [b"ID", b"NAME"]  # the table had begun when the reader left
    assert err == ""
    assert code == 1


def test_status_shows_how_many_raft_peers_each_controller_is_connected_to() -> None:
    def view(node_id: str, links: list[bool]) -> dict[str, Any]:
        return {
            "node": {"id": node_id, "role": "follower", "pid": 7},
            "raft": {"term": 3},
            "leader": {"node_id": "c1", "epoch": 4},
            "epoch": 4,
            "peers": [{"raft": f"10.0.0.{i}:7000", "connected": up} for i, up in enumerate(links)],
            "workers": [],
        }

    data = {
        "controllers": [
            {"url": "http://a", "status": 200, "body": view("c2", [True, True])},
            {"url": "http://b", "status": 200, "body": view("c3", [True, False])},
            {"url": "http://c", "status": 0, "error": "no answer"},
        ]
    }
    lines = cluster.render(data).splitlines()
    assert lines[0].split() == ["CONTROLLER", "NODE", "ROLE", "PID", "TERM", "PEERS", "LEADER"]
    assert "2/2 connected" in lines[1] and "1/2 connected" in lines[2]
    assert "unreachable: no answer" in lines[3]
