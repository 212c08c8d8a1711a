"""Runs and their attempts: created per slot by the leader, finished by worker reports.

Every state change is a guarded UPDATE naming the state it expects (see common/states.py),
so a late, duplicated or stale message changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from common.backoff import retry_delay
from common.catchup import ON_TIME_GRACE
from common.db import q
from common.errors import Conflict, NotFound
from common.repo.paging import count_to, split_counted_total
from common.states import ACTIVE, RunState


@dataclass(frozen=True)
class SlotRow:
    """One run row the leader wants to exist (state pending or skipped)."""

    job_id: int
    slot: datetime
    trigger: str
    state: str
    late: bool = False
    error: str | None = None


async def insert_slots(conn: AsyncConnection[Any], rows: list[SlotRow]) -> int:
    """One round trip for all rows; a slot that already has a run is silently kept as is.

    Returns how many runs were created (nothing is read back: the tick writes thousands of
    rows a second and needs none of them).
    """
    if not rows:
        return 0
    cur = await conn.execute(
        q("runs_insert_slots"),
        {
            "job_ids": [r.job_id for r in rows],
            "slots": [r.slot for r in rows],
            "triggers": [r.trigger for r in rows],
            "states": [r.state for r in rows],
            "lates": [r.late for r in rows],
            "errors": [r.error for r in rows],
            "grace": ON_TIME_GRACE,
        },
    )
    return cur.rowcount


async def notify(conn: AsyncConnection[Any], reason: str) -> None:
    """Wake the leader's dispatcher (delivered when the surrounding transaction commits)."""
    await conn.execute(q("runs_notify"), {"reason": reason})


async def trigger_now(conn: AsyncConnection[Any], job_id: int) -> dict[str, Any]:
    async with conn.transaction():
        cur = await conn.execute(q("run_insert_manual"), {"job_id": job_id})
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        await notify(conn, "trigger")
    return row


async def get(conn: AsyncConnection[Any], run_id: int) -> dict[str, Any]:
    cur = await conn.execute(q("run_get"), {"id": run_id})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"run {run_id} not found")
    cur = await conn.execute(q("run_attempts"), {"id": run_id})
    row["attempts"] = await cur.fetchall()
    return row


async def list_runs(
    conn: AsyncConnection[Any],
    *,
    job_id: int | None,
    state: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int | None, bool]:
    """Newest first: (page, total, whether the total is exact); see common/repo/paging.py."""
    counted_to = count_to(limit, offset)
    params = {"job_id": job_id, "state": state, "since": since, "until": until}
    params |= {"limit": limit, "offset": offset, "count_to": counted_to}
    cur = await conn.execute(q("runs_list"), params)
    return split_counted_total(await cur.fetchall(), counted_to)


async def request_cancel(conn: AsyncConnection[Any], run_id: int) -> str:
    """Cancel a pending run at once; ask the leader to kill an active one.

    Returns ``cancelled`` or ``cancelling``; a finished run is a 409.
    """
    async with conn.transaction():
        cur = await conn.execute(q("run_cancel_pending"), {"id": run_id})
        if await cur.fetchone():
            return "cancelled"
        cur = await conn.execute(q("run_request_cancel"), {"id": run_id})
        if await cur.fetchone():
            await notify(conn, "cancel")
            return "cancelling"
    run = await get(conn, run_id)
    raise Conflict(f"run {run_id} is {run['state']}: only pending or active runs can be cancelled")


# ----- leader side -----


# The claim must walk the runs_pending index. The planner's statistics lag a queue that grows
# by thousands of runs a second (autovacuum analyzes once a minute at most): seeing "129
# pending" where there were 135,000, it chose a bitmap scan, a join per pending run and a sort,
# 525 ms per 256-run batch, and at 5,000 per-second jobs nothing was ever dispatched. The
# walk is right whatever the size, so the claim plans with sorts and bitmap scans disabled.
_INDEX_WALK_ON = "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off"
_INDEX_WALK_OFF = "SET LOCAL enable_sort TO DEFAULT"


async def claim_pending(conn: AsyncConnection[Any], limit: int) -> list[dict[str, Any]]:
    """Inside the leader's fenced transaction: due pending runs, locked for dispatch.

    Bitmap scans stay off for the rest of the transaction: its other reads are lookups of a
    few hundred rows through the active-run indexes, and only a plain index scan marks the
    dead entries it meets (every run leaves two there, dispatched and running). Through a
    bitmap scan the per-worker count read ~30,000 dead entries a batch until autovacuum
    came round (3 ms a batch, instead of 0.2).
    """
    await conn.execute(_INDEX_WALK_ON, prepare=False)
    cur = await conn.execute(q("runs_claim_pending"), {"limit": limit})
    claimed = await cur.fetchall()
    await conn.execute(_INDEX_WALK_OFF, prepare=False)  # (an error rolls both back anyway)
    return claimed


async def overdue_slots(
    conn: AsyncConnection[Any], grace: float, limit: int
) -> list[dict[str, Any]]:
    """Inside the leader's transaction: pending slot runs past their starting deadline, locked."""
    cur = await conn.execute(q("runs_overdue_slots"), {"grace": grace, "limit": limit})
    return await cur.fetchall()


async def active_of_jobs(
    conn: AsyncConnection[Any], job_ids: list[int]
) -> dict[int, list[dict[str, Any]]]:
    """Active (dispatched or running) runs of the given jobs, by job."""
    cur = await conn.execute(q("runs_active_of_jobs"), {"job_ids": job_ids})
    found: dict[int, list[dict[str, Any]]] = {}
    for row in await cur.fetchall():
        found.setdefault(int(row["job_id"]), []).append(row)
    return found


async def pending_of_jobs(
    conn: AsyncConnection[Any], job_ids: list[int], horizon: float
) -> list[dict[str, Any]]:
    """Inside the leader's transaction: all waiting runs of these jobs, locked, slot order."""
    cur = await conn.execute(q("runs_pending_of_jobs"), {"job_ids": job_ids, "horizon": horizon})
    return await cur.fetchall()


async def active_total(conn: AsyncConnection[Any]) -> int:
    cur = await conn.execute(q("runs_active_total"))
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def skip_pending(conn: AsyncConnection[Any], skips: list[tuple[int, str]]) -> None:
    """Record pending runs as skipped, each with its reason.

    Only runs this transaction locked while pending (claimed, or read by
    :func:`pending_of_jobs` or :func:`overdue_slots`): the lock is the guard, so the update
    finds them by id alone, whatever the planner's statistics say about the queue.
    """
    if skips:
        await conn.execute(
            q("runs_skip_pending"),
            {"ids": [s[0] for s in skips], "reasons": [s[1] for s in skips]},
        )


async def defer_pending(conn: AsyncConnection[Any], run_ids: list[int], delay: float) -> None:
    """Move pending runs' ``not_before`` on; only runs locked as for :func:`skip_pending`."""
    if run_ids:
        await conn.execute(q("runs_defer_pending"), {"ids": run_ids, "delay": delay})


async def request_cancel_many(conn: AsyncConnection[Any], run_ids: list[int]) -> None:
    if run_ids:
        await conn.execute(q("runs_request_cancel_many"), {"ids": run_ids})


async def insert_backfill(
    conn: AsyncConnection[Any], job_id: int, slots: list[datetime], rate: float
) -> int:
    """Create a run per slot (existing slots are left alone), started at most ``rate``/s.

    Returns how many runs were created; the slot's unique key makes a repeat harmless.
    """
    if not slots:
        return 0
    delays = [i / rate for i in range(len(slots))]
    async with conn.transaction():
        cur = await conn.execute(
            q("runs_insert_backfill"), {"job_id": job_id, "slots": slots, "delays": delays}
        )
        created = len(await cur.fetchall())
        await notify(conn, "backfill")
    return created


async def mark_dispatched(
    conn: AsyncConnection[Any], assignments: list[tuple[int, str]], epoch: int
) -> set[int]:
    """Only in the transaction that claimed these runs: its lock is their guard."""
    if not assignments:
        return set()
    cur = await conn.execute(
        q("runs_mark_dispatched"),
        {
            "ids": [a[0] for a in assignments],
            "workers": [a[1] for a in assignments],
            "epoch": epoch,
        },
    )
    ids = {int(r["id"]) for r in await cur.fetchall()}
    await conn.execute(q("attempts_upsert_dispatched"), {"ids": list(ids)})
    return ids


HEARTBEAT_MARKS_AFTER = 1.0
"""A heartbeat marks running only the runs dispatched at least this long ago (s). The leader
marks the others a quarter of a second after their worker accepted them; this is for a
leader that died first, well inside the dispatch ack timeout (10 s by default) after which
a run still ``dispatched`` is re-queued."""


async def mark_running(
    conn: AsyncConnection[Any],
    started: Sequence[tuple[int, int, datetime | None]],
    worker_id: str | None = None,
) -> None:
    """Inside a transaction: (run_id, attempt, started_at) that workers say they started
    move from dispatched to running, with their attempts.

    A heartbeat passes no start time (the run keeps the one it has, else now) and its
    ``worker_id``: only its own runs, dispatched :data:`HEARTBEAT_MARKS_AFTER` ago or more.
    Runs another transaction holds (their results being stored, or marked by the leader and
    a heartbeat at once) are passed over without waiting; one still running is in the
    worker's next heartbeat.
    """
    if not started:
        return
    params = {
        "ids": [s[0] for s in started],
        "attempts": [s[1] for s in started],
        "started": [s[2] for s in started],
        "worker_id": worker_id,
        "settled": HEARTBEAT_MARKS_AFTER if worker_id is not None else 0.0,
    }
    await conn.execute(q("runs_mark_running"), params)


async def requeue_same_attempt(
    conn: AsyncConnection[Any], run_id: int, attempt: int, error: str, delay: float
) -> bool:
    """The worker certainly did not start it (refused, unreachable): try again elsewhere."""
    params = {"id": run_id, "attempt": attempt, "error": error, "delay": delay}
    cur = await conn.execute(q("run_requeue_same_attempt"), params)
    moved = await cur.fetchone() is not None
    if moved:
        await conn.execute(q("attempt_mark_refused"), params)
    return moved


async def active_counts(conn: AsyncConnection[Any]) -> dict[str, int]:
    cur = await conn.execute(q("runs_active_counts"))
    return {r["worker_id"]: int(r["active"]) for r in await cur.fetchall() if r["worker_id"]}


async def on_lost_workers(conn: AsyncConnection[Any], lease: float) -> list[dict[str, Any]]:
    cur = await conn.execute(q("runs_on_lost_workers"), {"lease": lease})
    return await cur.fetchall()


async def unacknowledged(conn: AsyncConnection[Any], ack_timeout: float) -> list[dict[str, Any]]:
    cur = await conn.execute(q("runs_unacknowledged"), {"ack_timeout": ack_timeout})
    return await cur.fetchall()


async def cancel_requested(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
    cur = await conn.execute(q("runs_cancel_requested"))
    return await cur.fetchall()


async def state_counts(conn: AsyncConnection[Any]) -> dict[str, int]:
    """Runs waiting, pending, dispatched and running (every one of them, 0 when none).

    Finished runs are left out: counting them reads the whole history at every scrape.
    """
    cur = await conn.execute(q("runs_state_counts"))
    return {r["state"]: int(r["n"]) for r in await cur.fetchall()}


# ----- results (worker reports and the reaper) -----


WORKER_OUTCOMES = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.TIMED_OUT, RunState.CANCELLED}
)
"""How an attempt can end; skipped and upstream_failed are decided before any attempt."""


@dataclass(frozen=True)
class AttemptResult:
    run_id: int
    attempt: int
    state: str
    worker_id: str | None = None
    exit_code: int | None = None
    output: str | None = None
    output_truncated: bool = False
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


OUTCOME_RECORDED = "recorded"
OUTCOME_RETRYING = "retrying"
OUTCOME_DUPLICATE = "duplicate"


@dataclass(frozen=True)
class AttemptDecision:
    """What one result does to its run, decided from the locked run row alone.

    ``params`` are the values written to the attempt and the run (None for a duplicate);
    ``delay`` is the retry backoff in seconds (retrying only); ``dag_run_id`` is set when a
    finished DAG node must wake the leader's DAG advancer.
    """

    outcome: str
    params: dict[str, Any] | None = None
    delay: float = 0.0
    dag_run_id: int | None = None


def decide_attempt(
    run: dict[str, Any] | None,
    result: AttemptResult,
    *,
    rand: Callable[[], float],
    now: datetime,
) -> AttemptDecision:
    """The rules for a result, shared by the one-result path and the batch (no I/O here).

    ``run`` is the run row locked FOR UPDATE (None when the run is gone). A result for an
    attempt that is not the run's current one, or for a run no longer active, is a
    duplicate and changes nothing. A failed or timed-out attempt is retried with backoff
    while retries remain and no cancel was asked for; anything else finishes the run.
    """
    if run is None:
        return AttemptDecision(OUTCOME_DUPLICATE)
    if run["attempt"] != result.attempt or RunState(run["state"]) not in ACTIVE:
        return AttemptDecision(OUTCOME_DUPLICATE)
    state = RunState(result.state)
    if state not in WORKER_OUTCOMES:
        raise ValueError(f"state: {result.state!r} is not a final attempt state")
    params = {
        "id": result.run_id,
        "attempt": result.attempt,
        "worker_id": result.worker_id or run["worker_id"],
        "state": state.value,
        "exit_code": result.exit_code,
        "output": result.output,
        "output_truncated": result.output_truncated,
        "error": result.error,
        "started_at": result.started_at,
        "finished_at": result.finished_at or now,
    }
    retryable = state in (RunState.FAILED, RunState.TIMED_OUT) and not run["cancel_requested"]
    if retryable and result.attempt <= int(run["max_retries"]):
        delay = retry_delay(result.attempt, base=float(run["retry_backoff_seconds"]), rand=rand())
        return AttemptDecision(OUTCOME_RETRYING, params, delay=delay)
    dag_run_id = run["dag_run_id"]
    return AttemptDecision(
        OUTCOME_RECORDED, params, dag_run_id=int(dag_run_id) if dag_run_id is not None else None
    )


def _run_after(run: dict[str, Any], decision: AttemptDecision) -> dict[str, Any]:
    """The locked row as the decision leaves it, for a later result of the same run."""
    assert decision.params is not None
    if decision.outcome == OUTCOME_RETRYING:
        return {**run, "state": RunState.PENDING.value, "attempt": run["attempt"] + 1}
    return {**run, "state": decision.params["state"]}


def _rand_source(rand: float | None) -> Callable[[], float]:
    """``random.random``, or a fixed value for tests."""
    return random.random if rand is None else (lambda: rand)


async def finish_attempt(
    conn: AsyncConnection[Any], result: AttemptResult, *, rand: float | None = None
) -> str:
    """Record how an attempt ended; retry with backoff when it failed and retries remain.

    Idempotent on (run_id, attempt): a result for an attempt that is no longer the run's
    active one is acknowledged and changes nothing. Returns ``recorded``, ``retrying`` or
    ``duplicate``. Call inside a transaction (the leader's is fenced; a worker's report is a
    fact and is accepted on any controller). Workers deliver through
    :func:`finish_attempts` (a batch); this is the leader's path and the older one-result RPC.
    """
    cur = await conn.execute(q("run_lock"), {"id": result.run_id})
    run = await cur.fetchone()
    decision = decide_attempt(run, result, rand=_rand_source(rand), now=_utcnow())
    if decision.params is None:
        return decision.outcome
    params = decision.params
    await conn.execute(q("attempt_finish"), params)
    if decision.outcome == OUTCOME_RETRYING:
        await conn.execute(q("run_retry"), {**params, "delay": decision.delay})
        await notify(conn, "retry")
        return decision.outcome
    await conn.execute(q("run_finish"), params)
    await notify(conn, "finished")
    if decision.dag_run_id is not None:  # the leader decides what the DAG run does next
        await conn.execute(q("dag_run_notify"), {"id": decision.dag_run_id})
    return decision.outcome


_ATTEMPT_COLUMNS = (
    ("ids", "id"),
    ("attempts", "attempt"),
    ("worker_ids", "worker_id"),
    ("states", "state"),
    ("exit_codes", "exit_code"),
    ("outputs", "output"),
    ("truncated", "output_truncated"),
    ("errors", "error"),
    ("started", "started_at"),
    ("finished", "finished_at"),
)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Row dicts as the parallel arrays the ``unnest`` statements take."""
    return {array: [row[key] for row in rows] for array, key in _ATTEMPT_COLUMNS}


async def finish_attempts(
    conn: AsyncConnection[Any],
    results: Sequence[AttemptResult],
    *,
    rand: Callable[[], float] = random.random,
) -> list[str]:
    """:func:`finish_attempt` for a whole batch of worker results, one outcome per result.

    Call inside one transaction: the batch is stored whole or not at all, so a worker whose
    call failed resends all of it and every result is applied exactly once (a resent one
    is a duplicate). The runs are locked in one statement in id order, which is the order
    every batch locks in, so two controllers storing overlapping batches queue instead of
    deadlocking. Results of the same run are decided in batch order against the row as
    the earlier ones left it (the same answers as one transaction per result). The writes
    are one statement per kind; one NOTIFY wakes the dispatcher for the whole batch, and
    each DAG run with a finished node is notified once.
    """
    if not results:
        return []
    cur = await conn.execute(
        q("runs_lock_for_results"), {"ids": sorted({r.run_id for r in results})}
    )
    runs: dict[int, dict[str, Any]] = {int(row["id"]): row for row in await cur.fetchall()}
    now = _utcnow()
    outcomes: list[str] = []
    attempts: list[dict[str, Any]] = []
    retries: list[dict[str, Any]] = []
    delays: list[float] = []
    finishes: list[dict[str, Any]] = []
    dag_run_ids: set[int] = set()
    for result in results:
        run = runs.get(result.run_id)
        decision = decide_attempt(run, result, rand=rand, now=now)
        outcomes.append(decision.outcome)
        if run is None or decision.params is None:
            continue
        runs[result.run_id] = _run_after(run, decision)
        attempts.append(decision.params)
        if decision.outcome == OUTCOME_RETRYING:
            retries.append(decision.params)
            delays.append(decision.delay)
        else:
            finishes.append(decision.params)
            if decision.dag_run_id is not None:
                dag_run_ids.add(decision.dag_run_id)
    if not attempts:
        return outcomes
    # At most one result per run gets here (the first one ends the run's active attempt),
    # so no statement below touches a row twice.
    await conn.execute(q("attempts_finish_many"), _columns(attempts))
    if retries:
        await conn.execute(q("runs_retry_many"), {**_columns(retries), "delays": delays})
    if finishes:
        await conn.execute(q("runs_finish_many"), _columns(finishes))
    await notify(conn, "results")
    for dag_run_id in sorted(dag_run_ids):  # the leader decides what each DAG run does next
        await conn.execute(q("dag_run_notify"), {"id": dag_run_id})
    return outcomes
