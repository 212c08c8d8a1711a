"""Faults with real processes: leader SIGKILL and SIGSTOP, worker SIGKILL, node restart.

Each test asserts the invariants from DESIGN.md: no slot twice, no slot lost without a
recorded reason, no run left running on a dead worker.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controller.local_cluster import LocalCluster
from tests.cluster.ledger import TERMINAL, assert_every_slot_once, create_ledger_job, settle
from tests.helpers import all_runs, api, unique, wait_until

pytestmark = pytest.mark.cluster


def test_leader_kill_does_not_miss_or_repeat_a_slot(make_cluster: Any, tmp_path: Path) -> None:
    cluster: LocalCluster = make_cluster()
    old = cluster.leader()
    assert old
    base = cluster.url(next(n for n in cluster.controller_names if n != old))
    ledger = tmp_path / "ledger.txt"
    started = time.monotonic()
    job = create_ledger_job(base, ledger)
    wait_until(
        "three successful runs",
        lambda: len([r for r in all_runs(base, job["id"]) if r["state"] == "succeeded"]) >= 3,
        timeout=30,
    )

    cluster.kill(old)
    killed_at = time.time()
    new = wait_until(
        "a new leader",
        lambda: (lambda n: n if n and n != old else None)(cluster.leader()),
        timeout=20,
    )
    elected_in = time.time() - killed_at

    def dispatched_by_new_leader() -> bool:
        info = cluster.cluster_info(new)
        epoch = info["epoch"] if info else None
        return any(
            r["epoch"] == epoch and r["state"] == "succeeded"
            for r in all_runs(cluster.url(new), job["id"])
        )

    wait_until("a run dispatched by the new leader", dispatched_by_new_leader, timeout=30)
    remaining = 22 - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)  # let the schedule run for 20+ s in total; not an assertion
    runs = settle(cluster, job["id"])
    assert len(runs) >= 20
    assert_every_slot_once(runs, ledger)
    print(f"new leader {new} elected {elected_in:.2f}s after SIGKILL of {old}")


def test_paused_leader_is_fenced_and_no_slot_runs_twice(make_cluster: Any, tmp_path: Path) -> None:
    cluster: LocalCluster = make_cluster()
    old = cluster.leader()
    assert old
    old_epoch = cluster.cluster_info(old)["epoch"]
    base = cluster.url(next(n for n in cluster.controller_names if n != old))
    ledger = tmp_path / "ledger.txt"
    job = create_ledger_job(base, ledger)
    wait_until(
        "runs to succeed",
        lambda: len([r for r in all_runs(base, job["id"]) if r["state"] == "succeeded"]) >= 2,
        timeout=30,
    )

    cluster.signal(old, signal.SIGSTOP)
    try:
        new = wait_until(
            "a new leader while the old one is stopped",
            lambda: (lambda n: n if n and n != old else None)(cluster.leader()),
            timeout=20,
        )
        new_epoch = cluster.cluster_info(new)["epoch"]
        assert new_epoch > old_epoch
        wait_until(
            "the new leader to dispatch",
            lambda: any(r["epoch"] == new_epoch for r in all_runs(base, job["id"])),
            timeout=30,
        )
    finally:
        cluster.signal(old, signal.SIGCONT)
        resumed_at = time.time()

    def old_is_follower() -> bool:
        info = cluster.cluster_info(old)
        return bool(info) and info["node"]["role"] != "leader" and not info["node"]["leading_epoch"]

    wait_until("the old leader to step down", old_is_follower, timeout=30)
    time.sleep(2)  # give the resumed node's loop a chance to try (and fail) to write
    runs = settle(cluster, job["id"])
    assert_every_slot_once(runs, ledger)
    leader_epochs = {r["epoch"] for r in runs if r["epoch"] is not None}
    assert max(leader_epochs) >= new_epoch
    after_resume = [
        r
        for r in runs
        if r["epoch"] == old_epoch
        and r["dispatched_at"]
        and datetime.fromisoformat(r["dispatched_at"]).timestamp() > resumed_at
    ]
    assert not after_resume, "the resumed old leader dispatched after a newer epoch existed"


def test_worker_killed_mid_task_run_is_retried_on_another_worker(
    make_cluster: Any, tmp_path: Path
) -> None:
    cluster: LocalCluster = make_cluster(extra_env={"CHRONORAFT_WORKER_LEASE": "3"})
    base = cluster.url("c1")
    marker = tmp_path / "attempts.txt"
    status, job = api(
        "POST",
        base,
        "/api/v1/jobs",
        {
            "name": unique("long"),
            "schedule": "0 0 1 1 *",
            "max_retries": 1,
            "retry_backoff": "1s",
            "command": f'echo "$CHRONORAFT_ATTEMPT" >> {marker}; sleep 6; echo done',
        },
    )
    assert status == 201
    status, run = api("POST", base, f"/api/v1/jobs/{job['id']}/trigger")

    def running() -> dict | None:
        body = api("GET", base, f"/api/v1/runs/{run['id']}")[1]
        return body if body["state"] == "running" else None

    first = wait_until("the run to start", running, timeout=30)
    victim = first["worker_id"]
    cluster.kill(victim)

    def finished() -> dict | None:
        body = api("GET", base, f"/api/v1/runs/{run['id']}")[1]
        return body if body["state"] in TERMINAL else None

    done = wait_until("the run to finish on another worker", finished, timeout=60)
    assert done["state"] == "succeeded", done
    assert done["attempt"] == 2 and done["worker_id"] != victim
    assert done["attempts"][0]["state"] == "failed"
    assert "lost" in done["attempts"][0]["error"]
    assert done["output"] == "done\n"


def test_worker_killed_with_no_retries_left_fails_the_run(
    make_cluster: Any, tmp_path: Path
) -> None:
    cluster: LocalCluster = make_cluster(workers=1, extra_env={"CHRONORAFT_WORKER_LEASE": "3"})
    base = cluster.url("c1")
    status, job = api(
        "POST",
        base,
        "/api/v1/jobs",
        {
            "name": unique("long"),
            "schedule": "0 0 1 1 *",
            "command": "sleep 30",
        },
    )
    status, run = api("POST", base, f"/api/v1/jobs/{job['id']}/trigger")
    wait_until(
        "the run to start",
        lambda: api("GET", base, f"/api/v1/runs/{run['id']}")[1]["state"] == "running",
        timeout=30,
    )
    cluster.kill("w1")
    done = wait_until(
        "the run to be failed",
        lambda: (lambda b: b if b["state"] == "failed" else None)(
            api("GET", base, f"/api/v1/runs/{run['id']}")[1]
        ),
        timeout=30,
    )
    assert "lost" in done["error"]


def test_restarted_controller_rejoins_with_the_same_id(make_cluster: Any) -> None:
    cluster: LocalCluster = make_cluster(workers=1)
    leader = cluster.leader()
    victim = next(n for n in cluster.controller_names if n != leader)
    cluster.kill(victim)
    cluster.start(victim)

    def rejoined() -> bool:
        info = cluster.cluster_info(victim)
        return (
            bool(info)
            and info["raft"]["leader"] is not None
            and all(p["connected"] for p in info["peers"])
        )

    wait_until("the restarted node to rejoin", rejoined, timeout=30)
    info = cluster.cluster_info(victim)
    assert info["node"]["id"] == victim and info["node"]["pid"] == cluster.nodes[victim].pid
    # Killing the leader now elects someone, possibly the restarted node.
    cluster.kill(leader)
    wait_until(
        "a new leader",
        lambda: (lambda n: n if n and n != leader else None)(cluster.leader()),
        timeout=30,
    )
