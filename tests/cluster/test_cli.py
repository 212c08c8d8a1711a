"""``chronoraft jobs|runs|dags|cluster|up`` as an operator runs them: subprocesses against a
real cluster, their printed tables and JSON, and their exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.local_cluster import LocalCluster, free_port_block
from tests.helpers import ADMIN_TOKEN, api, unique, wait_until

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def cli(
    cluster: LocalCluster | None, *args: str, token: str = ADMIN_TOKEN, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONORAFT_")}
    if cluster is not None:
        env["CHRONORAFT_URL"] = ",".join(cluster.url(n) for n in cluster.controller_names)
    if token:
        env["CHRONORAFT_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result.stdout


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def test_jobs_round_trip_through_the_cli(shared_cluster: LocalCluster) -> None:
    base = shared_cluster.url("c1")
    name = unique("cli")
    job = as_json(
        cli(
            shared_cluster,
            "jobs", "create", "--json",
            "--name", name, "--schedule", "0 3 * * *", "--command", "/bin/echo",
            "--arg", "hello", "--arg", "from the cli",
            "--env", "A=1", "--max-retries", "1", "--timeout", "5m",
        )
    )  # fmt: skip
    assert job["args"] == ["hello", "from the cli"] and job["env"] == {"A": "1"}
    assert job["timeout"] == 300 and job["max_retries"] == 1

    listed = ok(cli(shared_cluster, "jobs", "list", "--search", name))
    assert name in listed and "active" in listed and "1 job(s)" in listed
    shown = ok(cli(shared_cluster, "jobs", "show", name))
    assert "schedule:" in shown and "/bin/echo hello from the cli" in shown

    ok(cli(shared_cluster, "jobs", "pause", name))
    assert api("GET", base, f"/api/v1/jobs/{name}")[1]["paused"] is True
    assert "paused" in ok(
        cli(shared_cluster, "jobs", "list", "--status", "paused", "--search", name)
    )
    ok(cli(shared_cluster, "jobs", "resume", str(job["id"])))
    assert api("GET", base, f"/api/v1/jobs/{name}")[1]["paused"] is False

    run = as_json(cli(shared_cluster, "jobs", "trigger", name, "--json"))
    tail = cli(shared_cluster, "runs", "tail", str(run["id"]), "--timeout", "30")
    assert tail.returncode == 0, (tail.stdout, tail.stderr)
    assert "succeeded" in tail.stdout and "| hello from the cli" in tail.stdout

    runs = ok(cli(shared_cluster, "runs", "list", "--job", name))
    assert str(run["id"]) in runs and "manual" in runs
    detail = ok(cli(shared_cluster, "runs", "show", str(run["id"])))
    assert "state:" in detail and "hello from the cli" in detail
    assert as_json(cli(shared_cluster, "runs", "show", str(run["id"]), "--json"))["state"] == (
        "succeeded"
    )

    ok(cli(shared_cluster, "jobs", "delete", name))
    assert api("GET", base, f"/api/v1/jobs/{name}")[0] == 404


def test_jobs_create_from_a_file_with_flags_on_top(
    shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    name = unique("filejob")
    spec = tmp_path / "job.json"
    spec.write_text(
        json.dumps({"name": name, "schedule": "0 4 * * *", "command": "true", "max_retries": 2})
    )
    job = as_json(
        cli(
            shared_cluster,
            "jobs",
            "create",
            "--file",
            str(spec),
            "--schedule",
            "@every 1h",
            "--label",
            "gpu=yes",
            "--json",
        )
    )
    assert job["name"] == name and job["schedule"] == "@every 1h" and job["max_retries"] == 2
    assert job["labels"] == {"gpu": "yes"}
    ok(cli(shared_cluster, "jobs", "delete", name))


def test_failing_run_is_followed_to_a_non_zero_exit(shared_cluster: LocalCluster) -> None:
    name = unique("fails")
    as_json(
        cli(
            shared_cluster, "jobs", "create", "--json", "--name", name, "--schedule", "0 5 * * *",
            "--command", "echo broken; exit 3",
        )
    )  # fmt: skip
    run = as_json(cli(shared_cluster, "jobs", "trigger", name, "--json"))
    tail = cli(shared_cluster, "runs", "tail", str(run["id"]), "--timeout", "30", "--json")
    assert tail.returncode == 1, (tail.stdout, tail.stderr)
    events = [json.loads(line) for line in tail.stdout.splitlines()]
    assert events[-1]["state"] == "failed" and events[-1]["exit_code"] == 3
    ok(cli(shared_cluster, "jobs", "delete", name))


def test_api_errors_exit_non_zero_with_the_api_message(shared_cluster: LocalCluster) -> None:
    bad = cli(shared_cluster, "jobs", "create", "--name", unique("x"), "--schedule", "nope",
              "--command", "true")  # fmt: skip
    assert bad.returncode == 1 and "400 invalid_field: schedule:" in bad.stderr

    missing = cli(shared_cluster, "jobs", "show", unique("missing"))
    assert missing.returncode == 1 and missing.stderr.startswith("error: 404 not_found:")

    anonymous = cli(shared_cluster, "jobs", "list", token="")
    assert anonymous.returncode == 1 and "401" in anonymous.stderr

    name = unique("ro")
    as_json(cli(shared_cluster, "jobs", "create", "--json", "--name", name,
                "--schedule", "0 6 * * *", "--command", "true"))  # fmt: skip
    reader = cli(shared_cluster, "jobs", "pause", name, token=shared_cluster.read_token)
    assert reader.returncode == 1 and "403" in reader.stderr
    ok(cli(shared_cluster, "jobs", "delete", name))


def test_a_dead_url_is_skipped_for_the_next_controller(shared_cluster: LocalCluster) -> None:
    dead = f"http://127.0.0.1:{free_port_block(1)}"
    out = ok(cli(None, "jobs", "list", "--url", f"{dead},{shared_cluster.url('c2')}"))
    assert "job(s)" in out
    gone = cli(None, "jobs", "list", "--url", dead)
    assert gone.returncode == 1 and "no answer from" in gone.stderr


def test_cluster_status_shows_every_controller_workers_and_leader(
    shared_cluster: LocalCluster,
) -> None:
    leader = shared_cluster.leader()
    out = ok(cli(shared_cluster, "cluster", "status"))
    for name in shared_cluster.controller_names:
        assert shared_cluster.url(name) in out
    assert f"{leader} (epoch" in out and "w1" in out and "w2" in out
    data = as_json(cli(shared_cluster, "status", "--json"))
    roles = {v["body"]["node"]["id"]: v["body"]["node"]["role"] for v in data["controllers"]}
    assert roles[leader] == "leader" and len(roles) == 3


def test_dags_commands(shared_cluster: LocalCluster) -> None:
    """Enabled by itself once the controller serves the DAG API (/api/v1/dags)."""
    base = shared_cluster.url("c1")
    if api("GET", base, "/api/v1/dags")[0] == 404:
        pytest.skip("the DAG API (/api/v1/dags) is not served yet")
    name = unique("etl")
    for step in ("extract", "load"):
        body = {"name": f"{name}-{step}", "command": f"echo {step}"}
        status, created = api("POST", base, "/api/v1/definitions", body)
        assert status in (200, 201), created
    status, dag = api("POST", base, "/api/v1/dags", {"name": name})
    assert status == 201, dag
    dag_id = str(dag["id"])
    for step in ("extract", "load"):
        body = {"definition": f"{name}-{step}", "name": step}
        status, created = api("POST", base, f"/api/v1/dags/{dag_id}/jobs", body)
        assert status == 201, created
    body = {"parent": "extract", "child": "load"}
    status, edge = api("POST", base, f"/api/v1/dags/{dag_id}/dependencies", body)
    assert status == 201, edge
    first = as_json(cli(shared_cluster, "dags", "run", dag_id, "--json"))
    wait_until(
        "the first DAG run to finish",
        lambda: api("GET", base, f"/api/v1/dag-runs/{first['id']}")[1]["state"] != "running",
        timeout=40,
    )
    assert name in ok(cli(shared_cluster, "dags", "list"))
    assert "extract -> load" in ok(cli(shared_cluster, "dags", "show", dag_id))
    follow = cli(shared_cluster, "dags", "run", dag_id, "--follow", timeout=90)
    assert follow.returncode == 0, (follow.stdout, follow.stderr)
    assert "load: succeeded" in follow.stdout and follow.stdout.rstrip().endswith("succeeded")
    runs = as_json(cli(shared_cluster, "dags", "runs", dag_id, "--json"))
    assert len(runs["items"]) == 2 and {r["state"] for r in runs["items"]} == {"succeeded"}


def test_up_shows_progress_and_a_status_table(database_url: str, tmp_path: Path) -> None:
    base = free_port_block(20)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONORAFT_")}
    env["CHRONORAFT_DATABASE_URL"] = database_url
    result = subprocess.run(
        [
            sys.executable, "-m", "controller.cli", "up", "--controllers", "3", "--workers", "1",
            "--base-dir", str(tmp_path), "--http-base", str(base), "--raft-base", str(base + 5),
            "--grpc-base", str(base + 10), "--worker-base", str(base + 15),
            "--worker-http-base", str(base + 18), "--no-examples", "--exit-after", "0.5",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout, result.stderr)
    out = result.stdout
    assert "chronoraft up: controllers answering" in out
    assert "workers registered 1/1" in out and "ready in" in out
    table = out[out.index("NODE  KIND") :]
    for name in ("c1", "c2", "c3", "w1"):
        assert f"\n{name} " in table
    assert "leader" in table and "running" in table
    assert "stopped" in out.splitlines()[-1]
