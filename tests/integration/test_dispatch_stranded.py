"""Runs no live worker can take step aside: they must not starve the runs behind them.

300 pending runs of a job whose labels match no worker are more than one dispatch batch
(256). Before, they filled every batch and a run that could start at once waited forever;
now each is deferred and the startable run goes through.
"""

from __future__ import annotations

import psycopg
import pytest

from controller.leader.loop import DISPATCH_BATCH
from controller.local_cluster import LocalCluster
from tests.helpers import api, unique, wait_until

pytestmark = pytest.mark.cluster


def test_runs_no_worker_can_take_do_not_block_the_others(shared_cluster: LocalCluster) -> None:
    base = shared_cluster.url("c1")
    token = shared_cluster.admin_token
    status, stranded = api(
        "POST",
        base,
        "/api/v1/jobs",
        {
            "name": unique("stranded"),
            "schedule": "0 3 * * *",
            "command": "true",
            "labels": {"pool": "no-such-pool"},
        },
        token=token,
    )
    assert status == 201, stranded
    many = DISPATCH_BATCH + 44
    with psycopg.connect(shared_cluster.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries) "
            "SELECT %s, now() - make_interval(secs => g), 'manual', 'pending', 0 "
            "FROM generate_series(1, %s) g",
            (stranded["id"], many),
        )
        conn.execute("NOTIFY chronoraft_runs, 'test'")
    status, able = api(
        "POST",
        base,
        "/api/v1/jobs",
        {"name": unique("able"), "schedule": "0 3 * * *", "command": "echo went"},
        token=token,
    )
    assert status == 201, able
    _, run = api("POST", base, f"/api/v1/jobs/{able['id']}/trigger", token=token)
    try:
        done = wait_until(
            "the startable run to finish behind the stranded ones",
            lambda: (lambda r: r if r["state"] == "succeeded" else None)(
                api("GET", base, f"/api/v1/runs/{run['id']}", token=token)[1]
            ),
            30,
        )
        assert done["output"].strip() == "went"
        _, still = api(
            "GET", base, f"/api/v1/runs?job_id={stranded['id']}&status=pending", token=token
        )
        assert still["total"] == many  # waiting for a worker with those labels, not failed
    finally:
        api("DELETE", base, f"/api/v1/jobs/{stranded['id']}", token=token)
        api("DELETE", base, f"/api/v1/jobs/{able['id']}", token=token)
