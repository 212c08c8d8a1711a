"""The benchmark's own SQL: bulk job loading and read-outs of the runs table.

Kept in one module so the product's rule (SQL only in the repository layer) has one
visible exception: a measuring tool that loads 100,000 jobs with COPY, which no API offers,
and reads run timestamps straight from the table the leader wrote them to.

Jobs loaded here bypass the API's NOTIFY; callers then ask the leader to reload
(``POST /api/v1/scheduler/reload``) or fail it over, as an operator restoring a dump would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import psycopg

from bench.fires import Fire


@dataclass(frozen=True)
class BenchJob:
    """One cron job as the bench loads it: ``command`` with no args (exec'd, no shell)."""

    name: str
    schedule: str
    next_fire_at: datetime | None = None
    command: str = "true"


def every_second(prefix: str, count: int) -> Iterator[BenchJob]:
    """``count`` jobs ``* * * * * *`` named ``<prefix><i>``, next slot the coming second.

    ``next_fire_at`` is set as the API would set it: a row without one is re-read by the
    leader on every tick (its advance never matches), which is not what an API-made job
    costs.
    """
    first = datetime.fromtimestamp(math.floor(time.time()) + 1, UTC)
    for i in range(count):
        yield BenchJob(f"{prefix}{i}", "* * * * * *", first)


def copy_jobs(url: str, jobs: Iterable[BenchJob], catchup_window: float = 60.0) -> int:
    """Insert jobs with one COPY; returns how many. ``args = []`` makes the worker exec
    ``true`` directly, as APScheduler's side does, instead of through ``/bin/sh -c``."""
    count = 0
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            with cur.copy(
                "COPY jobs (name, schedule, timezone, command, args, next_fire_at, "
                "catchup_window_seconds) FROM STDIN"
            ) as copy:
                for job in jobs:
                    copy.write_row(
                        (
                            job.name,
                            job.schedule,
                            "UTC",
                            job.command,
                            "[]",
                            job.next_fire_at,
                            catchup_window,
                        )
                    )
                    count += 1
        conn.commit()
    return count


def pause_jobs(url: str, name_prefix: str) -> int:
    """Pause every job whose name starts with the prefix and tell the leader to reload.

    The cleared ``next_fire_at`` also makes the leader's own advance of these jobs miss,
    so it re-reads them even if the NOTIFY arrives after its next tick.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(
            "UPDATE jobs SET paused = true, next_fire_at = NULL, updated_at = now() "
            "WHERE name LIKE %s AND NOT paused",
            (name_prefix + "%",),
        )
        conn.execute("SELECT pg_notify('chronoraft_jobs', 'all')")
        return cur.rowcount


def skip_backlog(url: str, name_prefix: str) -> int:
    """End a saturation phase: runs still pending for these jobs are marked skipped, so
    the next phase does not start behind a backlog it did not create.

    The live leader and the controllers storing results lock the same rows meanwhile, so
    the rows are locked in id order first, as every statement of theirs that locks many
    runs does (or they skip locked rows): an unordered UPDATE here deadlocked with a
    worker's batch of results, and each retry of that batch deadlocked again, so its runs
    stayed unreported past the drain. The update then finds them by id (ANY of an array):
    joined to the locking CTE, a plan for stale statistics scanned the table once per row,
    for minutes.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            cur = conn.execute(
                "WITH locked AS MATERIALIZED ("
                " SELECT r.id FROM runs r JOIN jobs j ON j.id = r.job_id"
                " WHERE j.name LIKE %s AND r.state = 'pending'"
                " ORDER BY r.id FOR NO KEY UPDATE OF r) "
                "UPDATE runs SET state = 'skipped', error = 'bench: phase over', "
                "finished_at = now() "
                "WHERE id = ANY(ARRAY(SELECT id FROM locked)) AND state = 'pending'",
                (name_prefix + "%",),
            )
        except psycopg.errors.DeadlockDetected:
            return 0  # not expected (see above); end_phase simply calls again
        return cur.rowcount


UNSTARTED = ("pending", "dispatched")
UNFINISHED = ("pending", "dispatched", "running")


def unsettled(url: str, name_prefix: str, until: float, states: tuple[str, ...] = UNSTARTED) -> int:
    """Runs of these jobs scheduled before ``until`` still in one of ``states``."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs r JOIN jobs j ON j.id = r.job_id "
            "WHERE j.name LIKE %s AND r.scheduled_for < to_timestamp(%s) "
            "AND r.state = ANY(%s)",
            (name_prefix + "%", until, list(states)),
        ).fetchone()
    return int(row[0]) if row else 0


def wait_settled(
    url: str,
    name_prefix: str,
    until: float,
    timeout: float,
    states: tuple[str, ...] = UNSTARTED,
) -> int:
    """Wait (bounded) until no run before ``until`` is in ``states`` (default: every one
    has started); returns how many still are when the time is up."""
    deadline = time.monotonic() + timeout
    left = unsettled(url, name_prefix, until, states)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = unsettled(url, name_prefix, until, states)
    return left


def end_phase(url: str, name_prefix: str, timeout: float) -> int:
    """After pausing these jobs: skip their pending runs (again and again: a run a worker
    refused comes back to pending) until none is pending or running, within ``timeout``.
    Returns how many are still unfinished then. The next phase starts without a backlog."""
    deadline = time.monotonic() + timeout
    while True:
        skip_backlog(url, name_prefix)
        left = unsettled(url, name_prefix, time.time() + 86400, UNFINISHED)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.25)


def vacuum_run_tables(url: str) -> float:
    """VACUUM (ANALYZE) the tables every run writes; returns the seconds it took.

    Between steps of a saturation benchmark: each step leaves hundreds of thousands of dead
    row versions, and autovacuum's round over them (runs has 11 indexes) otherwise lands
    inside whichever step's window it happens to fall on, and the step after it plans with
    statistics of the one before. Statistics from this quiet moment are also the hardest
    case for the leader's statements (none active, none pending, then thousands a second),
    which is how the plans that walked every active run were found (docs/benchmarks.md).
    """
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) runs, run_attempts, jobs")
    return time.monotonic() - started


def fires(url: str, name_prefix: str, t0: float, t1: float) -> list[Fire]:
    """Every run of these jobs with a slot in ``[t0, t1)``: slot, start, state, and when the
    run was created and dispatched (for :func:`bench.fires.lateness_stages`)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT r.job_id, extract(epoch FROM r.scheduled_for)::float8, "
            "extract(epoch FROM r.started_at)::float8, r.state, "
            "extract(epoch FROM r.created_at)::float8, "
            "extract(epoch FROM r.dispatched_at)::float8 "
            "FROM runs r JOIN jobs j ON j.id = r.job_id "
            "WHERE j.name LIKE %s AND r.dag_run_id IS NULL "
            "AND r.scheduled_for >= to_timestamp(%s) AND r.scheduled_for < to_timestamp(%s)",
            (name_prefix + "%", t0, t1),
        ).fetchall()
    return [
        Fire(
            job=str(r[0]),
            slot=float(r[1]),
            started=r[2],
            state=str(r[3]),
            created=r[4],
            dispatched=r[5],
        )
        for r in rows
    ]


def finished_between(url: str, name_prefix: str, t0: float, t1: float) -> dict[str, int]:
    """Runs of these jobs that ended inside ``[t0, t1)``, by final state."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT r.state, count(*) FROM runs r JOIN jobs j ON j.id = r.job_id "
            "WHERE j.name LIKE %s AND r.finished_at >= to_timestamp(%s) "
            "AND r.finished_at < to_timestamp(%s) GROUP BY r.state",
            (name_prefix + "%", t0, t1),
        ).fetchall()
    return {str(state): int(n) for state, n in rows}


def slots_between(url: str, t0: float, t1: float) -> int:
    """Runs created by the scheduler for slots inside ``[t0, t1)`` (every job)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE trigger IN ('schedule', 'catchup') "
            "AND scheduled_for >= to_timestamp(%s) AND scheduled_for < to_timestamp(%s)",
            (t0, t1),
        ).fetchone()
    return int(row[0]) if row else 0


def wait_epoch_above(url: str, old: int, timeout: float) -> int | None:
    """The epoch in the leadership row once it is above ``old`` (a new leader claimed it);
    read from PostgreSQL because a leader rebuilding a large heap may answer HTTP late."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT epoch FROM leadership WHERE id = 1").fetchone()
            if row and int(row[0]) > old:
                return int(row[0])
            time.sleep(0.02)
    return None


class Dispatch(NamedTuple):
    """When a run was dispatched and the slot it was for, both in epoch seconds."""

    at: float
    slot: float


def first_dispatch(url: str, epoch: int, deadline: float) -> Dispatch | None:
    """The first run dispatched under ``epoch`` (polls until ``deadline``, a ``time.time()``
    value); None if none by then."""
    with psycopg.connect(url, autocommit=True) as conn:
        while time.time() < deadline:
            row = conn.execute(
                "SELECT extract(epoch FROM dispatched_at)::float8, "
                "extract(epoch FROM scheduled_for)::float8 FROM runs WHERE epoch = %s "
                "AND dispatched_at IS NOT NULL ORDER BY dispatched_at LIMIT 1",
                (epoch,),
            ).fetchone()
            if row:
                return Dispatch(float(row[0]), float(row[1]))
            time.sleep(0.02)
    return None


def first_slot_created(url: str, after: float, deadline: float) -> float | None:
    """Epoch seconds of the first scheduled run created after ``after`` (polls until
    ``deadline``): with the old leader dead, that is the new leader's first tick."""
    with psycopg.connect(url, autocommit=True) as conn:
        while time.time() < deadline:
            row = conn.execute(
                "SELECT extract(epoch FROM min(created_at))::float8 FROM runs "
                "WHERE created_at > to_timestamp(%s) AND trigger IN ('schedule', 'catchup')",
                (after,),
            ).fetchone()
            if row and row[0] is not None:
                return float(row[0])
            time.sleep(0.02)
    return None


def job_ids(url: str, name_prefix: str) -> list[int]:
    """Ids of live jobs with the prefix (for API reads of existing jobs)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id FROM jobs WHERE name LIKE %s AND deleted_at IS NULL ORDER BY id",
            (name_prefix + "%",),
        ).fetchall()
    return [int(r[0]) for r in rows]
