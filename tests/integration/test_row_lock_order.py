"""Transactions that update many rows at once lock them in id order, so they wait for each
other instead of deadlocking. The tick and the dispatcher update many job rows (the tick
moves next_fire_at, the dispatcher counts skipped slots): at 5,000 per-second jobs an
unordered UPDATE ... FROM deadlocked every few seconds, and each deadlock paused the
dispatcher as if PostgreSQL were down. A batch marked running and a batch of results share
runs when a `true` ends before its batch is marked running: they deadlocked too, and so did
a worker's heartbeat, which marks running the runs it reports. Marking running now passes
over the runs another transaction holds instead of waiting for them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from common.repo import jobs as jobs_repo
from common.repo import runs as runs_repo
from common.repo import workers as workers_repo
from tests.integration.pg_locks import waiting_for_a_lock


def _jobs(url: str, count: int) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "INSERT INTO jobs (name, schedule, command) "
            "SELECT 'lock-' || g, '* * * * * *', 'true' FROM generate_series(1, %s) g "
            "RETURNING id",
            (count,),
        ).fetchall()
        ids = sorted(int(r[0]) for r in rows)
        # Edit the lower id, so its row now sits after the other on disk: a scan meets
        # the rows against id order, as it does on any table with some history.
        conn.execute("UPDATE jobs SET description = 'edited' WHERE id = %s", (ids[0],))
    return ids


def test_advance_and_count_skips_lock_rows_in_the_same_order(database_url: str) -> None:
    first, second = _jobs(database_url, 2)
    slot = datetime.now(UTC).replace(microsecond=0)

    async def scenario() -> None:
        connect = psycopg.AsyncConnection.connect
        async with (
            await connect(database_url, row_factory=dict_row) as dispatcher,
            await connect(database_url, row_factory=dict_row) as tick,
        ):
            # The dispatcher holds the first job's row ...
            await jobs_repo.count_skips(dispatcher, {first: jobs_repo.SkipCounts(missed=1)})
            # ... the tick advances both, listing the second first (the heap's order is
            # not the id order) ...
            advancing = asyncio.create_task(
                jobs_repo.advance(
                    tick,
                    [second, first],
                    [None, None],
                    [slot, slot + timedelta(seconds=1)],
                    [0, 0],
                )
            )
            await waiting_for_a_lock(database_url, tick.info.backend_pid)
            # ... and the dispatcher now wants the second one too: with the tick holding
            # it while waiting for the first, this was a deadlock.
            await jobs_repo.count_skips(dispatcher, {second: jobs_repo.SkipCounts(overlap=1)})
            await dispatcher.commit()
            moved = await asyncio.wait_for(advancing, 10)
            await tick.commit()
            assert moved == {first, second}

    asyncio.run(scenario())
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows: dict[int, dict[str, Any]] = {
            r["id"]: r
            for r in conn.execute(
                "SELECT id, missed_count, skipped_overlap_count, next_fire_at FROM jobs "
                "WHERE id = ANY(%s)",
                ([first, second],),
            )
        }
    assert rows[first]["missed_count"] == 1 and rows[second]["skipped_overlap_count"] == 1
    assert rows[second]["next_fire_at"] == slot
    assert rows[first]["next_fire_at"] == slot + timedelta(seconds=1)


def _dispatched_runs(url: str, count: int) -> list[int]:
    job = _jobs(url, 1)[0]
    with psycopg.connect(url, autocommit=True) as conn:
        ids = sorted(
            int(r[0])
            for r in conn.execute(
                # Dispatched a while ago: a heartbeat marks only those (HEARTBEAT_MARKS_AFTER).
                "INSERT INTO runs (job_id, scheduled_for, trigger, state, worker_id, epoch, "
                "dispatched_at) SELECT %s, now() + make_interval(secs => g), 'schedule', "
                "'dispatched', 'w1', 1, now() - interval '1 minute' "
                "FROM generate_series(1, %s) g RETURNING id",
                (job, count),
            )
        )
        conn.execute(
            "INSERT INTO run_attempts (run_id, attempt, worker_id, epoch, state, dispatched_at) "
            "SELECT id, 1, 'w1', 1, 'dispatched', now() FROM unnest(%s::bigint[]) id",
            (ids,),
        )
        # Other active runs, so the planner looks the batch's runs up by id, in the batch's
        # order (on a near-empty table it scans them in id order whatever the statement).
        conn.execute(
            "INSERT INTO runs (job_id, scheduled_for, trigger, state, worker_id, epoch) "
            "SELECT %s, now() - make_interval(secs => g), 'schedule', 'dispatched', 'w2', 1 "
            "FROM generate_series(1, 5000) g",
            (job,),
        )
        conn.execute("ANALYZE runs")
        # A new version of the lower id's row with new index entries (scheduled_for is
        # indexed, so not a HOT update): scans now meet it after the other one.
        conn.execute(
            "UPDATE runs SET scheduled_for = scheduled_for + interval '1 hour' WHERE id = %s",
            (ids[0],),
        )
    return ids


def _states(url: str, run_ids: list[int]) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT state FROM runs WHERE id = ANY(%s)", (run_ids,)).fetchall()
    return [row[0] for row in rows]


def _attempt_states(url: str, run_ids: list[int]) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT state FROM run_attempts WHERE run_id = ANY(%s) AND attempt = 1", (run_ids,)
        ).fetchall()
    return [row[0] for row in rows]


async def _heartbeat(conn: psycopg.AsyncConnection[Any], running: list[tuple[int, int]]) -> bool:
    """Worker w1's heartbeat, listing ``running`` as the (run_id, attempt) it runs."""
    return await workers_repo.heartbeat(
        conn,
        worker_id="w1",
        address="127.0.0.1:1",
        labels={},
        capacity=4,
        running=running,
        version="test",
        draining=False,
    )


def test_marking_a_batch_running_passes_over_runs_whose_results_are_being_stored(
    database_url: str,
) -> None:
    """A `true` often ends before its batch is marked running: the mark must neither wait
    for the result's transaction (it held both 60-300 ms at 1,500 runs a second, and in the
    wrong order they deadlocked) nor undo the result."""
    first, second = _dispatched_runs(database_url, 2)
    now = datetime.now(UTC)

    def ended(run_id: int) -> runs_repo.AttemptResult:
        return runs_repo.AttemptResult(
            run_id=run_id,
            attempt=1,
            state="succeeded",
            worker_id="w1",
            exit_code=0,
            output="",
            started_at=now,
            finished_at=now,
        )

    async def scenario() -> None:
        connect = psycopg.AsyncConnection.connect
        async with (
            await connect(database_url, row_factory=dict_row) as results,
            await connect(database_url, row_factory=dict_row) as delivery,
        ):
            # One worker's results hold the first run ...
            assert await runs_repo.finish_attempts(results, [ended(first)]) == ["recorded"]
            # ... and the leader marks its batch running, the second run listed first.
            await asyncio.wait_for(
                runs_repo.mark_running(delivery, [(second, 1, now), (first, 1, now)]), 10
            )
            await delivery.commit()
            await results.commit()

    asyncio.run(scenario())
    assert _states(database_url, [first, second]) == ["succeeded", "running"]
    assert _attempt_states(database_url, [first, second]) == ["succeeded", "running"]


def test_a_heartbeat_passes_over_runs_the_leader_is_marking(database_url: str) -> None:
    first, second = _dispatched_runs(database_url, 2)
    now = datetime.now(UTC)

    async def scenario() -> None:
        connect = psycopg.AsyncConnection.connect
        async with (
            await connect(database_url, row_factory=dict_row) as delivery,
            await connect(database_url, row_factory=dict_row) as heartbeat,
        ):
            # The leader's marker holds the first run ...
            await runs_repo.mark_running(delivery, [(first, 1, now)])
            # ... the worker's heartbeat reports both and marks the second ...
            await asyncio.wait_for(_heartbeat(heartbeat, [(second, 1), (first, 1)]), 10)
            # ... which the leader's next mark, still in its transaction, passes over.
            await asyncio.wait_for(runs_repo.mark_running(delivery, [(second, 1, now)]), 10)
            await delivery.commit()

    asyncio.run(scenario())
    assert _states(database_url, [first, second]) == ["running", "running"]
    assert _attempt_states(database_url, [first, second]) == ["running", "running"]


def test_a_heartbeat_marks_the_runs_it_reports_running_with_their_attempts(
    database_url: str,
) -> None:
    """The leader marks started runs running a quarter of a second later, in batches; a
    leader that dies first leaves it to the worker's heartbeat, which lists what it runs.
    The heartbeat leaves the runs dispatched just now to the leader: marking every run it
    listed wrote a third of all `true` runs' rows and attempts once more."""
    reported, other, recent = _dispatched_runs(database_url, 3)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE runs SET dispatched_at = now() WHERE id = %s", (recent,))

    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(
            database_url, row_factory=dict_row
        ) as conn:
            await _heartbeat(conn, [(reported, 1), (recent, 1)])

    asyncio.run(scenario())
    assert _states(database_url, [reported]) == ["running"]
    assert _attempt_states(database_url, [reported]) == ["running"]
    for left in (other, recent):
        assert (
            _states(database_url, [left]) == _attempt_states(database_url, [left]) == ["dispatched"]
        )
