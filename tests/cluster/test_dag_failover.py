"""A DAG run survives a SIGKILL of the leader in the middle of it.

    A -> B -> C -> E
    A -> D ------> E

Every node sleeps 1.5 s, then appends ``<node name> <run id> <attempt>`` to a ledger file, so
an execution the database forgot, or one that happened twice, shows up there. The leader is
killed while B runs; the successor must pick the DAG run up from PostgreSQL, take B's result
and run C and E, each once, in dependency order.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controller.local_cluster import LocalCluster
from tests.helpers import api, unique, wait_until

pytestmark = pytest.mark.cluster

NODES = ("A", "B", "C", "D", "E")
EDGES = (("A", "B"), ("B", "C"), ("A", "D"), ("C", "E"), ("D", "E"))
FINAL = {"succeeded", "failed", "cancelled", "skipped"}


def _post(base: str, path: str, body: Any) -> dict[str, Any]:
    status, doc = api("POST", base, path, body)
    assert status == 201, (path, status, doc)
    return doc


def _build_dag(base: str, ledger: Path) -> int:
    """One definition placed five times; the worker tells each node its name."""
    definition = _post(
        base,
        "/api/v1/definitions",
        {
            "name": unique("ledger-step"),
            "command": 'sleep 1.5 && echo "$CHRONORAFT_JOB_NAME $CHRONORAFT_RUN_ID '
            f'$CHRONORAFT_ATTEMPT" >> {ledger}',
        },
    )
    dag = _post(base, "/api/v1/dags", {"name": unique("failover-dag")})
    for name in NODES:
        _post(
            base,
            f"/api/v1/dags/{dag['id']}/jobs",
            {"definition_id": definition["id"], "name": name},
        )
    for parent, child in EDGES:
        _post(base, f"/api/v1/dags/{dag['id']}/dependencies", {"parent": parent, "child": child})
    return int(dag["id"])


def _dag_run(base: str, run_id: int) -> dict[str, Any]:
    status, run = api("GET", base, f"/api/v1/dag-runs/{run_id}")
    assert status == 200, run
    return run


def _attempts(base: str, run_id: int) -> list[dict[str, Any]]:
    status, run = api("GET", base, f"/api/v1/runs/{run_id}")
    assert status == 200, run
    return run["attempts"]


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_dag_run_finishes_once_per_node_after_leader_kill(
    make_cluster: Any, tmp_path: Path
) -> None:
    cluster: LocalCluster = make_cluster()
    old = cluster.leader()
    assert old
    old_epoch = cluster.cluster_info(old)["epoch"]
    base = cluster.url(next(n for n in cluster.controller_names if n != old))
    ledger = tmp_path / "ledger.txt"
    dag_id = _build_dag(base, ledger)
    run_id = _post(base, f"/api/v1/dags/{dag_id}/runs", {})["id"]

    def node_b_running() -> bool:
        nodes = {n["name"]: n for n in _dag_run(base, run_id)["nodes"]}
        return nodes["B"]["state"] == "running"

    wait_until("node B to run", node_b_running, timeout=30, interval=0.1)
    cluster.kill(old)
    killed_at = time.time()
    new = wait_until(
        "a new leader",
        lambda: (lambda n: n if n and n != old else None)(cluster.leader()),
        timeout=20,
    )
    new_epoch = cluster.cluster_info(new)["epoch"]
    assert new_epoch > old_epoch

    run = wait_until(
        "the DAG run to finish under the new leader",
        lambda: (lambda r: r if r["state"] in FINAL else None)(_dag_run(base, run_id)),
        timeout=90,
    )
    assert run["state"] == "succeeded", run
    nodes = {n["name"]: n for n in run["nodes"]}
    assert set(nodes) == set(NODES)
    for name, node in nodes.items():
        assert node["state"] == "succeeded", node
        assert node["attempt"] == 1, f"{name} needed another attempt, yet no worker was lost"
        attempts = _attempts(base, node["run_id"])
        assert len(attempts) == 1, f"{name} was dispatched more than once: {attempts}"

    # The premise: B was still running when its leader died, and the successor ran the rest.
    assert _at(nodes["B"]["finished_at"]) > killed_at, nodes["B"]
    for name in ("C", "E"):
        assert _at(nodes[name]["started_at"]) > killed_at, nodes[name]
        epoch = _attempts(base, nodes[name]["run_id"])[0]["epoch"]
        assert epoch >= new_epoch, f"{name} dispatched in epoch {epoch}, before the new leader's"

    lines = ledger.read_text().splitlines()
    executed = Counter(line.split()[0] for line in lines)
    assert executed == Counter(NODES), f"each node must run exactly once: {lines}"
    for line in lines:
        name, ledger_run_id, attempt = line.split()
        assert int(ledger_run_id) == nodes[name]["run_id"], line
        assert attempt == "1", line

    order = [line.split()[0] for line in lines]
    for parent, child in EDGES:
        assert order.index(parent) < order.index(child), f"{child} before {parent}: {order}"
        finished, started = nodes[parent]["finished_at"], nodes[child]["started_at"]
        assert _at(finished) <= _at(started), (
            f"{child} started {started}, {parent} ended {finished}"
        )
    print(
        f"killed leader {old} while B ran; {new} (epoch {new_epoch}) finished the DAG run "
        f"{_at(run['finished_at']) - killed_at:.2f}s after the kill"
    )
