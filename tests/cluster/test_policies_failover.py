"""Overlap policies hold across a leader kill: the new leader looks at the runs PostgreSQL
has active before it catches up, so `skip` never starts a second concurrent run."""

from __future__ import annotations

from typing import Any

import pytest

from controller.local_cluster import LocalCluster
from tests.helpers import all_runs, api, unique, wait_until
from tests.integration.test_policies import max_overlap, stop_and_settle

pytestmark = pytest.mark.cluster


def test_overlap_skip_holds_across_a_leader_kill(make_cluster: Any) -> None:
    cluster: LocalCluster = make_cluster()
    old = cluster.leader()
    base = cluster.url(next(n for n in cluster.controller_names if n != old))
    status, job = api(
        "POST",
        base,
        "/api/v1/jobs",
        {
            "name": unique("forbid"),
            "schedule": "* * * * * *",
            "command": "sleep 4",
            "overlap": "skip",
        },
    )
    assert status == 201
    wait_until(
        "a run in progress",
        lambda: any(r["state"] == "running" for r in all_runs(base, job["id"])),
        timeout=30,
    )
    cluster.kill(old)
    wait_until(
        "a new leader",
        lambda: (lambda n: n if n and n != old else None)(cluster.leader()),
        timeout=30,
    )
    wait_until(
        "runs dispatched by the new leader to finish",
        lambda: sum(r["state"] == "succeeded" for r in all_runs(base, job["id"])) >= 3,
        timeout=60,
    )
    runs = stop_and_settle(base, job["id"])
    assert max_overlap(runs) == 1
    assert all(r["error"] for r in runs if r["state"] == "skipped")


def test_cluster_wide_cap_limits_active_runs_across_jobs(make_cluster: Any) -> None:
    cluster: LocalCluster = make_cluster(extra_env={"CHRONORAFT_MAX_RUNNING": "1"})
    base = cluster.url("c1")
    jobs = []
    for _ in range(2):
        status, job = api(
            "POST",
            base,
            "/api/v1/jobs",
            {
                "name": unique("capped"),
                "schedule": "@every 1s",
                "command": "sleep 1.5",
                "overlap": "buffer_one",
            },
        )
        assert status == 201
        jobs.append(job)
    wait_until(
        "both jobs to have run",
        lambda: all(any(r["state"] == "succeeded" for r in all_runs(base, j["id"])) for j in jobs),
        timeout=60,
    )
    runs = [r for j in jobs for r in stop_and_settle(base, j["id"])]
    assert max_overlap(runs) == 1
