"""The dispatch queue: claimed in priority order from an index, and bounded by the starting
deadline (a slot's run still pending after its catch-up window is skipped, not started).

Before, the claim sorted the whole due backlog for every batch and every due slot waited
however long it took, so an overloaded fleet queued without bound and, at 5,000 per-second
jobs, started nothing at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from common.db import q
from common.repo import runs as runs_repo
from controller.local_cluster import LocalCluster
from tests.helpers import api, unique, wait_until


def _job(conn: psycopg.Connection[Any], name: str, priority: int = 0) -> int:
    row = conn.execute(
        "INSERT INTO jobs (name, schedule, command, priority) "
        "VALUES (%s, '0 3 * * *', 'true', %s) RETURNING id",
        (name, priority),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def test_claim_takes_higher_priority_first_and_runs_carry_their_jobs_priority(
    database_url: str,
) -> None:
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        low, high = _job(conn, "low"), _job(conn, "high", priority=5)
        older = conn.execute(q("run_insert_manual"), {"job_id": low}).fetchone()
        newer = conn.execute(q("run_insert_manual"), {"job_id": high}).fetchone()
        assert older is not None and newer is not None
        assert (older["priority"], newer["priority"]) == (0, 5)

    async def claim() -> list[int]:
        async with await psycopg.AsyncConnection.connect(
            database_url, row_factory=dict_row
        ) as aconn:
            return [int(r["id"]) for r in await runs_repo.claim_pending(aconn, 10)]

    assert asyncio.run(claim()) == [newer["id"], older["id"]]


def test_claim_order_comes_from_an_index_not_a_sort_of_the_backlog(database_url: str) -> None:
    """With sorting disabled the planner still sorts if nothing else can give the order."""
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        conn.execute("SET enable_sort = off")
        plan = "\n".join(
            row["QUERY PLAN"]
            for row in conn.execute("EXPLAIN " + q("runs_claim_pending"), {"limit": 256})
        )
    assert "runs_pending" in plan, plan
    assert "Sort" not in plan, plan


def test_claim_walks_the_index_when_statistics_say_the_queue_is_empty(database_url: str) -> None:
    """The queue grows by thousands of runs a second, faster than autovacuum analyzes it:
    with statistics from when it was empty the planner chose a bitmap scan, a join for every
    pending run and a sort (525 ms a batch at 135,000 pending, so nothing was dispatched).
    auto_explain shows the plan claim_pending really ran."""
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        job = _job(conn, "busy")
        conn.execute("ANALYZE runs")  # statistics of an empty queue
        conn.execute(
            "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries, not_before) "
            "SELECT %s, now() - make_interval(secs => g), 'schedule', 'pending', 0, "
            "now() - interval '1 hour' FROM generate_series(1, 20000) g",
            (job,),
        )

    async def claimed_plan() -> tuple[int, str]:
        async with await psycopg.AsyncConnection.connect(
            database_url, row_factory=dict_row
        ) as aconn:
            notices: list[str] = []
            aconn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            await aconn.execute("LOAD 'auto_explain'")
            await aconn.execute("SET auto_explain.log_min_duration = 0")
            await aconn.execute("SET client_min_messages = log")
            claimed = await runs_repo.claim_pending(aconn, 256)
            await aconn.rollback()
            plans = [n for n in notices if "runs_claim_pending" in n or "Walks the" in n]
            return len(claimed), "\n".join(plans)

    count, plan = asyncio.run(claimed_plan())
    assert count == 256
    assert "Index Scan using runs_pending" in plan, plan
    assert "Sort" not in plan and "Bitmap" not in plan, plan


@pytest.mark.cluster
def test_slots_past_their_window_are_skipped_not_started(shared_cluster: LocalCluster) -> None:
    base = shared_cluster.url("c1")
    token = shared_cluster.admin_token

    def create(**extra: Any) -> dict[str, Any]:
        spec = {"name": unique("deadline"), "schedule": "0 3 * * *", "command": "true", **extra}
        status, job = api("POST", base, "/api/v1/jobs", spec, token=token)
        assert status == 201, job
        return job

    short, long = create(), create(catchup_window="5m")
    with psycopg.connect(shared_cluster.database_url, autocommit=True) as conn:

        def old_run(job_id: int, trigger: str) -> int:
            row = conn.execute(
                "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries) "
                "VALUES (%s, now() - interval '2 minutes', %s, 'pending', 0) RETURNING id",
                (job_id, trigger),
            ).fetchone()
            assert row is not None
            return int(row[0])

        too_late = old_run(short["id"], "schedule")
        asked_for = old_run(short["id"], "manual")
        in_window = old_run(long["id"], "schedule")
        backlog = 2_000  # more than a dispatch batch: skipped in bulk by the overdue sweep
        conn.execute(
            "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries) "
            "SELECT %s, now() - make_interval(mins => 3, secs => g), 'schedule', 'pending', 0 "
            "FROM generate_series(1, %s) g",
            (short["id"], backlog),
        )
        conn.execute("NOTIFY chronoraft_runs, 'test'")

    def state(run_id: int) -> dict[str, Any] | None:
        run = api("GET", base, f"/api/v1/runs/{run_id}", token=token)[1]
        return run if run["state"] in {"skipped", "succeeded", "failed"} else None

    try:
        skipped = wait_until("the late slot's run to be settled", lambda: state(too_late), 30)
        assert skipped["state"] == "skipped", skipped
        assert skipped["error"] == "missed: not started within catchup_window 1m"
        assert skipped["attempts"] == [], "a skipped slot must never have been dispatched"
        assert wait_until("the manual run", lambda: state(asked_for), 30)["state"] == "succeeded"
        assert wait_until("the 5m-window run", lambda: state(in_window), 30)["state"] == (
            "succeeded"
        )
        wait_until(
            "the backlog skipped",
            lambda: (
                api("GET", base, f"/api/v1/runs?job_id={short['id']}&status=pending", token=token)[
                    1
                ]["total"]
                == 0
            ),
            30,
        )
        counters = api("GET", base, f"/api/v1/jobs/{short['id']}", token=token)[1]["counters"]
        assert counters["missed"] == backlog + 1
        _, skipped_runs = api(
            "GET", base, f"/api/v1/runs?job_id={short['id']}&status=skipped", token=token
        )
        assert skipped_runs["total"] == backlog + 1
    finally:
        for job in (short, long):
            api("DELETE", base, f"/api/v1/jobs/{job['id']}", token=token)
