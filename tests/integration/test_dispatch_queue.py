"""The dispatch queue: claimed in priority order from an index, and bounded by the starting
deadline (a slot's run still pending after its catch-up window is skipped, not started).

Before, the claim sorted the whole due backlog for every batch and every due slot waited
however long it took, so an overloaded fleet queued without bound and, at 5,000 per-second
jobs, started nothing at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row, tuple_row

from common.catchup import ON_TIME_GRACE
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


def _insert_slots(conn: psycopg.Connection[Any], job_id: int, slots: list[datetime]) -> None:
    """Pending slot runs, written by the statement the leader's tick uses."""
    conn.execute(
        q("runs_insert_slots"),
        {
            "job_ids": [job_id] * len(slots),
            "slots": slots,
            "triggers": ["schedule"] * len(slots),
            "states": ["pending"] * len(slots),
            "lates": [False] * len(slots),
            "errors": [None] * len(slots),
            "grace": ON_TIME_GRACE,
        },
    )


def _slot_run(conn: psycopg.Connection[Any], job_id: int, slot: datetime) -> int:
    _insert_slots(conn, job_id, [slot])
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute("SELECT id FROM runs WHERE job_id = %s AND scheduled_for = %s", (job_id, slot))
        .fetchone()
    )
    assert row is not None
    return int(row[0])


def _history_analyzed(conn: psycopg.Connection[Any], job_id: int) -> None:
    """100,000 finished runs, as any cluster that has run a while has, then ANALYZE: the
    statistics of a quiet moment (nothing pending, nothing active) that the leader's
    statements must not be planned from as if the queue stayed that way."""
    conn.execute(
        "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries) "
        "SELECT %s, now() - interval '1 day' - make_interval(secs => g), 'schedule', "
        "'succeeded', 0 FROM generate_series(1, 100000) g",
        (job_id,),
    )
    conn.execute("ANALYZE runs")


@asynccontextmanager
async def _explaining(
    database_url: str,
) -> AsyncIterator[tuple[psycopg.AsyncConnection[dict[str, Any]], list[str]]]:
    """A connection whose every statement's plan, as run, lands in the list (auto_explain)."""
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as aconn:
        notices: list[str] = []
        aconn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        await aconn.execute("LOAD 'auto_explain'")
        await aconn.execute("SET auto_explain.log_min_duration = 0")
        await aconn.execute("SET client_min_messages = log")
        yield aconn, notices


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
    pending run and a sort (525 ms a batch at 135,000 pending, so nothing was dispatched),
    and marking a batch dispatched read every pending run through runs_pending (22 of 29 ms
    a batch at 60,000 pending). auto_explain shows the plans the dispatcher really ran."""
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        job = _job(conn, "busy")
        _history_analyzed(conn, job)
        conn.execute(
            "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries, not_before) "
            "SELECT %s, now() - make_interval(secs => g), 'schedule', 'pending', 0, "
            "now() - interval '1 hour' FROM generate_series(1, 20000) g",
            (job,),
        )

    async def dispatched_plans() -> tuple[int, int, str, str]:
        async with _explaining(database_url) as (aconn, notices):
            claimed = await runs_repo.claim_pending(aconn, 256)
            marked = await runs_repo.mark_dispatched(
                aconn, [(int(r["id"]), "w1") for r in claimed], epoch=1
            )
            await aconn.rollback()

            def plan_of(marker: str) -> str:
                return "\n".join(n for n in notices if marker in n)

            return (
                len(claimed),
                len(marked),
                plan_of("Walks the runs_pending index"),
                plan_of("that lock is the guard"),
            )

    claimed, marked, claim_plan, mark_plan = asyncio.run(dispatched_plans())
    assert claimed == marked == 256
    assert "Index Scan using runs_pending" in claim_plan, claim_plan
    assert "Sort" not in claim_plan and "Bitmap" not in claim_plan, claim_plan
    scans = [line for line in mark_plan.splitlines() if "Scan" in line]
    assert any("Index Scan using runs_pkey on runs" in line for line in scans), mark_plan
    assert not any("runs_pending" in line or "runs_state" in line for line in scans), mark_plan


_QUEUE_INDEXES = ("runs_active", "runs_job_active", "runs_state_recent", "runs_pending")


def _scans_by_state(plan: str) -> list[str]:
    """The plan's scans of runs that walk a state's rows instead of finding runs by id."""
    scans = [line for line in plan.splitlines() if " Scan " in line and " on runs" in line]
    return [s for s in scans if "Seq Scan" in s or any(i in s for i in _QUEUE_INDEXES)]


def test_results_and_marks_find_runs_by_id_when_statistics_say_none_are_active(
    database_url: str,
) -> None:
    """Statistics are taken in a quiet moment (the bench's VACUUM ANALYZE between steps,
    autovacuum between bursts) and then thousands of runs are dispatched a second. With
    their state guards in the UPDATE itself, marking runs running and storing results
    walked every active run (runs_active, runs_state_recent) and joined each to the batch:
    85-150 ms a call at 1,500 runs a second, PostgreSQL's CPU tripled. Every statement of
    those paths must find its runs by id; the guards are checked on the rows as locked."""
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        job = _job(conn, "quiet-stats")
        conn.execute("UPDATE jobs SET max_retries = 1 WHERE id = %s", (job,))
        _history_analyzed(conn, job)
        active = [
            int(row["id"])
            for row in conn.execute(
                "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries, "
                "worker_id, dispatched_at) SELECT %s, now() - make_interval(secs => g), "
                "'schedule', 'dispatched', 1, 'w1', now() - interval '1 minute' "
                "FROM generate_series(1, 5000) g "
                "RETURNING id",
                (job,),
            )
        ]
        conn.execute(
            "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries, not_before) "
            "SELECT %s, now() - interval '2 hours' - make_interval(secs => g), 'manual', "
            "'pending', 0, now() - interval '1 hour' FROM generate_series(1, 20000) g",
            (job,),
        )
    marked, beaten, finished, retried, cancelled = (active[i : i + 100] for i in range(0, 500, 100))

    async def plans() -> dict[str, str]:
        async with _explaining(database_url) as (aconn, notices):
            now = datetime.now(UTC)
            await runs_repo.mark_running(aconn, [(r, 1, now) for r in marked])
            await runs_repo.mark_running(aconn, [(r, 1, None) for r in beaten], "w1")
            results = [
                runs_repo.AttemptResult(r, 1, "succeeded", "w1", exit_code=0) for r in finished
            ] + [runs_repo.AttemptResult(r, 1, "failed", "w1", exit_code=1) for r in retried]
            outcomes = await runs_repo.finish_attempts(aconn, results)
            assert outcomes == ["recorded"] * 100 + ["retrying"] * 100
            await runs_repo.request_cancel_many(aconn, cancelled)
            claimed = [int(r["id"]) for r in await runs_repo.claim_pending(aconn, 256)]
            await runs_repo.skip_pending(aconn, [(r, "test") for r in claimed[:128]])
            await runs_repo.defer_pending(aconn, claimed[128:], 5.0)
            async with aconn.cursor(row_factory=tuple_row) as cur:
                await cur.execute(
                    "SELECT state, count(*) FROM runs WHERE id = ANY(%s) GROUP BY state",
                    (marked + beaten + finished + retried,),
                )
                states = dict(await cur.fetchall())
            await aconn.rollback()
            assert states == {"running": 200, "succeeded": 100, "pending": 100}, states

            def plan_of(marker: str) -> str:
                found = [n for n in notices if marker in n]
                assert found, marker
                return "\n".join(found)

            return {
                "running": plan_of("Runs workers said they started"),
                "finish": plan_of("run_finish for many runs"),
                "retry": plan_of("run_retry for many runs"),
                "cancel": plan_of("SET cancel_requested = true"),
                "skip": plan_of("SET state = 'skipped', error = v.reason"),
                "defer": plan_of("Waiting runs step aside"),
            }

    for name, plan in asyncio.run(plans()).items():
        assert "runs_pkey" in plan, (name, plan)
        assert _scans_by_state(plan) == [], (name, plan)


def test_the_overdue_sweep_walks_only_the_runs_past_their_deadline(database_url: str) -> None:
    """The sweep runs every second under overload, when the queue is longest: it used to test
    every pending run against its job's window (127 ms a sweep at ~40,000 pending runs, all
    still in their window, returning none). Each slot's run now carries its deadline."""
    now = datetime.now(UTC)
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        short = _job(conn, "sweep-short")  # catch-up window 60 s (the default)
        long = _job(conn, "sweep-long")
        conn.execute("UPDATE jobs SET catchup_window_seconds = 300 WHERE id = %s", (long,))
        overdue = _slot_run(conn, short, now - timedelta(minutes=2))
        _slot_run(conn, long, now - timedelta(minutes=2))
        retried = _slot_run(conn, short, now - timedelta(minutes=3))
        conn.execute("UPDATE runs SET state = 'dispatched' WHERE id = %s", (retried,))
        retry = {
            "id": retried,
            "attempt": 1,
            "delay": 0,
            "exit_code": 1,
            "output": "",
            "output_truncated": False,
            "error": "exit 1",
        }
        assert conn.execute(q("run_retry"), retry).rowcount == 1  # a retry has no deadline
        conn.execute(
            "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries) "
            "VALUES (%s, now() - interval '2 minutes', 'manual', 'pending', 0)",
            (short,),
        )
        queue = 20_000  # in their window: the sweep must not walk them
        _insert_slots(conn, short, [now - timedelta(milliseconds=g) for g in range(1, queue)])
        conn.execute("ANALYZE runs")

    async def swept() -> tuple[list[int], str]:
        async with _explaining(database_url) as (aconn, notices):
            rows = await runs_repo.overdue_slots(aconn, ON_TIME_GRACE, 10_000)
            await aconn.rollback()
            plans = [n for n in notices if "Slot runs that can no longer start" in n]
            return [int(r["id"]) for r in rows], "\n".join(plans)

    ids, plan = asyncio.run(swept())
    assert ids == [overdue]
    assert "runs_start_deadline" in plan, plan
    with psycopg.connect(database_url, autocommit=True) as conn:  # an edit widens the window
        conn.execute("UPDATE jobs SET catchup_window_seconds = 600 WHERE id = %s", (short,))
    assert asyncio.run(swept())[0] == []


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
    now = datetime.now(UTC)
    with psycopg.connect(shared_cluster.database_url, autocommit=True) as conn:
        # Slot runs are written as the leader's tick writes them (with their deadline).
        too_late = _slot_run(conn, short["id"], now - timedelta(minutes=2))
        in_window = _slot_run(conn, long["id"], now - timedelta(minutes=2))
        row = conn.execute(
            "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries) "
            "VALUES (%s, now() - interval '2 minutes', 'manual', 'pending', 0) RETURNING id",
            (short["id"],),
        ).fetchone()
        assert row is not None
        asked_for = int(row[0])
        backlog = 2_000  # more than a dispatch batch: skipped in bulk by the overdue sweep
        _insert_slots(
            conn, short["id"], [now - timedelta(minutes=3, seconds=g) for g in range(backlog)]
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
