"""Graceful shutdown with real processes: SIGTERM to controllers (rolling restart) and to a
worker in the middle of a run.

A controller that leads ends its leader loop, hands Raft leadership to a follower and exits 0;
a worker stops taking work, finishes what it runs, reports it and exits 0.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controller.local_cluster import LocalCluster
from tests.cluster.ledger import TERMINAL, assert_every_slot_once, create_ledger_job, settle
from tests.helpers import all_runs, api, unique, wait_until

pytestmark = pytest.mark.cluster


def _rejoined(cluster: LocalCluster, name: str) -> bool:
    """The node is back: it follows a known leader, sees every peer, and someone leads."""
    info = cluster.cluster_info(name)
    return (
        bool(info)
        and info["raft"]["leader"] is not None
        and all(p["connected"] for p in info["peers"])
        and cluster.leader() is not None
    )


def _claimed_after(cluster: LocalCluster, epoch: int) -> dict[str, Any] | None:
    """The first leadership claim with an epoch above ``epoch``, as PostgreSQL logged it."""
    for name in cluster.controller_names:
        info = cluster.cluster_info(name, timeout=1.0)
        if info:
            newer = [h for h in info["leadership_history"] if h["epoch"] > epoch]
            return min(newer, key=lambda h: h["epoch"]) if newer else None
    return None


def test_rolling_restart_of_all_controllers_loses_no_slot(
    make_cluster: Any, tmp_path: Path
) -> None:
    cluster: LocalCluster = make_cluster()
    leader = cluster.leader()
    assert leader
    ledger = tmp_path / "ledger.txt"
    job = create_ledger_job(cluster.url(leader), ledger)
    wait_until(
        "two successful runs",
        lambda: (
            len([r for r in all_runs(cluster.url(leader), job["id"]) if r["state"] == "succeeded"])
            >= 2
        ),
        timeout=30,
    )

    gaps: list[tuple[str, float]] = []
    todo = list(cluster.controller_names)
    while todo:
        # Restart the leader whenever it has not been restarted yet: more handovers to test.
        leader = wait_until("a leader", cluster.leader, timeout=30)
        name = leader if leader in todo else todo[0]
        todo.remove(name)
        epoch = cluster.cluster_info(leader)["epoch"]
        stopped_at = time.time()
        cluster.stop(name, timeout=30)
        assert cluster.nodes[name].proc.returncode == 0, cluster.tail(name)
        if name == leader:
            claim = wait_until(
                "a successor to claim leadership",
                lambda e=epoch: _claimed_after(cluster, e),
                timeout=30,
            )
            gap = datetime.fromisoformat(claim["claimed_at"]).timestamp() - stopped_at
            gaps.append((name, gap))
            print(
                f"leader {name} stopped: {claim['node_id']} claimed epoch {claim['epoch']} "
                f"{gap:.3f}s after SIGTERM"
            )
        cluster.start(name)
        wait_until(f"{name} to rejoin", lambda n=name: _rejoined(cluster, n), timeout=60)

    assert gaps, "no leader was stopped"
    # Generous: a handover takes well under a second; a busy 2-core box may stretch it.
    assert all(gap < 10.0 for _, gap in gaps), gaps
    handovers = sum(
        cluster.nodes[n].log_path.read_text().count("leadership handed over")
        for n in cluster.controller_names
    )
    print(f"leaderless gaps: {[f'{n}: {g:.3f}s' for n, g in gaps]}; raft handovers: {handovers}")

    final = wait_until("a leader after the restarts", cluster.leader, timeout=30)
    final_epoch = cluster.cluster_info(final)["epoch"]
    wait_until(
        "a run dispatched by the last leader",
        lambda: any(
            r["epoch"] == final_epoch and r["state"] == "succeeded"
            for r in all_runs(cluster.url(final), job["id"])
        ),
        timeout=30,
    )
    runs = settle(cluster, job["id"])
    assert_every_slot_once(runs, ledger)
    skipped = [r for r in runs if r["state"] == "skipped"]
    assert not skipped, f"slots skipped during the rolling restart: {skipped}"
    late = sum(1 for r in runs if r["late"])
    print(f"{len(runs)} slots, {late} fired late, none skipped")


def _run(base: str, run_id: int) -> dict[str, Any]:
    status, body = api("GET", base, f"/api/v1/runs/{run_id}")
    assert status == 200, body
    return body


def _one_shot_job(base: str, command: str) -> dict[str, Any]:
    status, job = api(
        "POST",
        base,
        "/api/v1/jobs",
        {"name": unique("drain"), "schedule": "0 0 1 1 *", "command": command},
    )
    assert status == 201, job
    return job


def test_sigterm_lets_a_worker_finish_its_run_and_take_no_new_one(
    make_cluster: Any,
) -> None:
    cluster: LocalCluster = make_cluster(workers=1)
    base = cluster.url("c1")
    long_job = _one_shot_job(base, "sleep 3; echo finished")
    later_job = _one_shot_job(base, "echo later")
    status, first = api("POST", base, f"/api/v1/jobs/{long_job['id']}/trigger")
    assert status == 201, first
    wait_until("the run to start", lambda: _run(base, first["id"])["state"] == "running", 30)

    stopper = threading.Thread(target=cluster.stop, args=("w1",), kwargs={"timeout": 30})
    stopper.start()

    def draining() -> bool:
        info = cluster.cluster_info("c1")
        return bool(info) and any(w["id"] == "w1" and w["draining"] for w in info["workers"])

    wait_until("the worker to announce it is draining", draining, timeout=30, interval=0.05)
    status, second = api("POST", base, f"/api/v1/jobs/{later_job['id']}/trigger")
    assert status == 201, second
    stopper.join(timeout=60)
    assert not stopper.is_alive()
    proc = cluster.nodes["w1"].proc
    assert proc is not None and proc.returncode == 0, cluster.tail("w1")

    done = wait_until(
        "the running run to be reported",
        lambda: (lambda r: r if r["state"] in TERMINAL else None)(_run(base, first["id"])),
        timeout=30,
    )
    assert done["state"] == "succeeded", done
    assert done["output"] == "finished\n"
    assert done["attempt"] == 1

    waiting = _run(base, second["id"])
    assert waiting["state"] == "pending", waiting
    assert waiting["started_at"] is None
    assert all(a["started_at"] is None for a in waiting["attempts"]), waiting

    restarted_at = time.time()
    cluster.start("w1")
    ran = wait_until(
        "the waiting run to run on the restarted worker",
        lambda: (lambda r: r if r["state"] in TERMINAL else None)(_run(base, second["id"])),
        timeout=60,
    )
    assert ran["state"] == "succeeded", ran
    assert ran["output"] == "later\n"
    assert datetime.fromisoformat(ran["started_at"]).timestamp() >= restarted_at - 1.0
