"""Runs and their attempts: created per slot by the leader, finished by worker reports.

Every state change is a guarded UPDATE naming the state it expects (see common/states.py),
so a late, duplicated or stale message changes nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from common.backoff import retry_delay
from common.db import q
from common.errors import Conflict, NotFound
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


async def insert_slots(conn: AsyncConnection[Any], rows: list[SlotRow]) -> list[dict[str, Any]]:
    """One round trip for all rows; a slot that already has a run is silently kept as is."""
    if not rows:
        return []
    cur = await conn.execute(
        q("runs_insert_slots"),
        {
            "job_ids": [r.job_id for r in rows],
            "slots": [r.slot for r in rows],
            "triggers": [r.trigger for r in rows],
            "states": [r.state for r in rows],
            "lates": [r.late for r in rows],
            "errors": [r.error for r in rows],
        },
    )
    return await cur.fetchall()


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
) -> tuple[list[dict[str, Any]], int | None]:
    cur = await conn.execute(
        q("runs_list"),
        {
            "job_id": job_id,
            "state": state,
            "since": since,
            "until": until,
            "limit": limit,
            "offset": offset,
        },
    )
    rows = await cur.fetchall()
    total = int(rows[0]["total_count"]) if rows else None
    for row in rows:
        row.pop("total_count", None)
    return rows, total


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


async def claim_pending(conn: AsyncConnection[Any], limit: int) -> list[dict[str, Any]]:
    """Inside the leader's fenced transaction: due pending runs, locked for dispatch."""
    cur = await conn.execute(q("runs_claim_pending"), {"limit": limit})
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
    """Record pending runs as skipped, each with its reason (guarded on ``pending``)."""
    if skips:
        await conn.execute(
            q("runs_skip_pending"),
            {"ids": [s[0] for s in skips], "reasons": [s[1] for s in skips]},
        )


async def defer_pending(conn: AsyncConnection[Any], run_ids: list[int], delay: float) -> None:
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


async def mark_running(
    conn: AsyncConnection[Any], started: list[tuple[int, int, datetime]]
) -> None:
    """Inside the leader's transaction: (run_id, attempt, started_at) confirmed by workers."""
    if not started:
        return
    params = {
        "ids": [s[0] for s in started],
        "attempts": [s[1] for s in started],
        "started": [s[2] for s in started],
    }
    await conn.execute(q("runs_mark_running"), params)
    await conn.execute(q("attempts_mark_running"), params)


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


async def finish_attempt(
    conn: AsyncConnection[Any], result: AttemptResult, *, rand: float | None = None
) -> str:
    """Record how an attempt ended; retry with backoff when it failed and retries remain.

    Idempotent on (run_id, attempt): a result for an attempt that is no longer the run's
    active one is acknowledged and changes nothing. Returns ``recorded``, ``retrying`` or
    ``duplicate``. Call inside a transaction (the leader's is fenced; a worker's report is a
    fact and is accepted on any controller).
    """
    cur = await conn.execute(q("run_lock"), {"id": result.run_id})
    run = await cur.fetchone()
    if run is None:
        return "duplicate"
    if run["attempt"] != result.attempt or RunState(run["state"]) not in ACTIVE:
        return "duplicate"
    state = RunState(result.state)
    if state not in WORKER_OUTCOMES:
        raise ValueError(f"state: {result.state!r} is not a final attempt state")
    finished_at = result.finished_at or _utcnow()
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
        "finished_at": finished_at,
    }
    await conn.execute(q("attempt_finish"), params)
    retryable = state in (RunState.FAILED, RunState.TIMED_OUT) and not run["cancel_requested"]
    if retryable and result.attempt <= int(run["max_retries"]):
        delay = retry_delay(
            result.attempt,
            base=float(run["retry_backoff_seconds"]),
            rand=random.random() if rand is None else rand,
        )
        await conn.execute(q("run_retry"), {**params, "delay": delay})
        await notify(conn, "retry")
        return "retrying"
    await conn.execute(q("run_finish"), params)
    await notify(conn, "finished")
    if run["dag_run_id"] is not None:  # the leader decides what the DAG run does next
        await conn.execute(q("dag_run_notify"), {"id": run["dag_run_id"]})
    return "recorded"
