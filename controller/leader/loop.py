"""The leader loop: scheduler (heap tick), dispatcher, reaper and NOTIFY listener.

Started by :class:`controller.leadership.LeadershipManager` when this node wins an election
and cancelled when it loses one. Every write goes through :func:`fenced`, so if a newer
leader has claimed the epoch row the first write raises :class:`Fenced` and the whole loop
ends. PostgreSQL errors pause the loop's parts (with backoff) instead of ending leadership.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import grpc
import psycopg
from psycopg_pool import AsyncConnectionPool

from common import overlap, placement
from common.aio import cancel_and_wait, run_in_passes
from common.catchup import ON_TIME_GRACE, CatchupMode, plan_due, start_deadline_missed
from common.db import rolled_back
from common.errors import Fenced
from common.logging import ctx
from common.repo import dag_runs as dag_runs_repo
from common.repo import dags as dags_repo
from common.repo import jobs as jobs_repo
from common.repo import leadership
from common.repo import runs as runs_repo
from common.repo import workers as workers_repo
from common.schedule import ScheduleError
from common.settings import Settings
from common.states import OverlapPolicy
from controller.leader.fencing import fenced
from controller.leader.heap import HeapJob, ScheduleHeap, cached_schedule
from controller.leader.worker_client import WorkerClients
from controller.metrics import ControllerMetrics
from proto import chronoraft_pb2 as pb

log = logging.getLogger(__name__)

DISPATCH_BATCH = 256
DB_ERRORS = (psycopg.OperationalError, psycopg.errors.AdminShutdown, OSError)
REFUSED_BEFORE_RUNNING = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
"""The worker's auth interceptor answered before the task was looked at: safe to move."""
try:  # PoolTimeout is what an outage looks like through the pool
    from psycopg_pool import PoolTimeout

    DB_ERRORS = (*DB_ERRORS, PoolTimeout)  # type: ignore[assignment]
except ImportError:  # pragma: no cover
    pass


def db_fault(exc: BaseException) -> Literal["conflict", "outage"] | None:
    """What a leader task's database error means for it.

    "conflict": a deadlock or serialization failure rolled one transaction back; PostgreSQL
    is up and nothing was written, so the task retries at once. "outage": PostgreSQL is
    unreachable or failing, so the leader backs off, reloads its heap and holds the reaper
    back. A conflict is checked first: psycopg raises it as an OperationalError.
    """
    if rolled_back(exc):
        return "conflict"
    if isinstance(exc, DB_ERRORS):
        return "outage"
    return None


WAIT_RECHECK_SECONDS = 0.5
DELIVERIES_IN_FLIGHT = 4
"""Dispatched batches whose RunTasks may be under way at once."""
RUNNING_MARK_DELAY = 0.25
"""How long workers' "started" answers are gathered before one transaction marks them
running. A run that ends sooner, as most short commands do, goes from dispatched straight to
its result (which carries its start time): one write fewer of its row and of its attempt,
and 75 % of the runs took that write at 1,300 `true` runs a second. A longer run shows
running this much later; a leader that dies first leaves it to the worker's heartbeat."""
STRANDED_RECHECK_SECONDS = 1.0
"""How long a run no live worker can take (labels, allowlist) steps aside before a recheck."""
WARNED_RUNS_KEPT = 10_000
"""How many run ids the "no live worker allows command" warning remembers (once per run)."""
DAG_SWEEP_SECONDS = 5.0
CHANNELS = ("chronoraft_jobs", "chronoraft_runs", "chronoraft_dags", "chronoraft_dag_defs")
OVERDUE_SWEEP_SECONDS = 1.0
OVERDUE_SWEEP_LIMIT = 10_000
"""How often, and how many at a time, slot runs past their starting deadline are skipped
in bulk ahead of the dispatch batches (which also skip any they claim)."""


@dataclass
class _BatchPlan:
    start: list[dict[str, Any]]
    settled: int
    cancel: bool


async def _close_attempt(
    conn: Any, run: dict[str, Any], state: str, error: str, worker_id: str | None = None
) -> str:
    """End a run's current attempt on the leader's word (the worker cannot report it).

    ``worker_id`` for a run row that does not carry one (a claimed pending run has none).
    """
    return await runs_repo.finish_attempt(
        conn,
        runs_repo.AttemptResult(
            run_id=run["id"],
            attempt=run["attempt"],
            state=state,
            worker_id=worker_id or run.get("worker_id"),
            error=error,
        ),
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def task_env(run: dict[str, Any]) -> dict[str, str]:
    """The job's env plus who the run is, and for a DAG node its payload and inputs."""
    env = {
        **(run["env"] or {}),
        **(run.get("secret_env") or {}),
        # Let commands know which run they are (e.g. for their own idempotency).
        "CHRONORAFT_RUN_ID": str(run["id"]),
        "CHRONORAFT_ATTEMPT": str(run["attempt"]),
        "CHRONORAFT_JOB_ID": str(run["job_id"]),
        "CHRONORAFT_SCHEDULED_FOR": run["scheduled_for"].isoformat(),
    }
    if run["dag_run_id"] is not None:
        env["CHRONORAFT_DAG_RUN_ID"] = str(run["dag_run_id"])
        env["CHRONORAFT_JOB_NAME"] = run["name"]
    if run["idempotency_key"]:
        env["CHRONORAFT_IDEMPOTENCY_KEY"] = run["idempotency_key"]
    if run["payload"] is not None:
        env["CHRONORAFT_PAYLOAD"] = json.dumps(run["payload"])
    if run["input"]:  # outputs of the node's data parents, by parent name
        env["CHRONORAFT_INPUT"] = json.dumps(run["input"])
        for parent, output in run["input"].items():
            env["CHRONORAFT_INPUT_" + re.sub(r"[^A-Z0-9]", "_", parent.upper())] = output
    return env


def http_spec(run: dict[str, Any]) -> pb.HttpRequestSpec | None:
    """An http job's request; a DAG job's payload, when set, is sent as the JSON body."""
    http = run["http"]
    if run["kind"] != "http" or not http:
        return None
    body = http.get("body") or ""
    headers = {str(k): str(v) for k, v in (http.get("headers") or {}).items()}
    if run["payload"] is not None:
        body = json.dumps(run["payload"])
        headers.setdefault("Content-Type", "application/json")
    return pb.HttpRequestSpec(
        method=http.get("method") or "GET",
        url=http["url"],
        headers=headers,
        body=body,
        expected_status=int(http.get("expected_status") or 0),
    )


def run_needs(run: dict[str, Any]) -> placement.RunNeeds:
    """What placement checks for a run: its labels, and the command exactly as ``_task_request``
    passes it (``args`` None is a shell command), so a worker's allowlist is applied to what
    the worker would actually be asked to run."""
    args = run["args"]
    return placement.RunNeeds(
        selector=run["labels"] or {},
        kind="http" if run["kind"] == "http" else "cmd",
        command=run["command"] or "",
        args=None if args is None else tuple(args),
    )


def worker_slot(row: dict[str, Any]) -> placement.WorkerSlot:
    allowed = row.get("allowed_commands")
    return placement.WorkerSlot(
        worker_id=row["id"],
        address=row["address"],
        labels=row["labels"] or {},
        capacity=int(row["capacity"]),
        draining=bool(row["draining"]),
        allowed_commands=None if allowed is None else tuple(str(p) for p in allowed),
    )


def _split_missed(
    by_job: dict[int, list[dict[str, Any]]], now: datetime
) -> dict[int, list[tuple[int, str]]]:
    """Take out of ``by_job`` the runs past their starting deadline; (run id, reason) by job."""
    missed: dict[int, list[tuple[int, str]]] = {}
    for job_id, runs in by_job.items():
        keep = []
        for run in runs:
            reason = start_deadline_missed(
                run["trigger"],
                int(run["attempt"]),
                run["scheduled_for"],
                now,
                float(run["catchup_window_seconds"]),
            )
            if reason is None:
                keep.append(run)
            else:
                missed.setdefault(job_id, []).append((int(run["id"]), reason))
        runs[:] = keep
    return missed


class LeaderLoop:
    """Everything the leader does for one epoch. ``run()`` returns only by exception."""

    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        epoch: int,
        metrics: ControllerMetrics,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.epoch = epoch
        self.metrics = metrics
        self.heap = ScheduleHeap()
        self.dag_heap = ScheduleHeap()
        """Scheduled DAGs; entries carry the DAG id in ``job_id``."""
        self.clients = WorkerClients(settings)  # the gRPC secret, and TLS when configured
        self._wake_scheduler = asyncio.Event()
        self._wake_dispatcher = asyncio.Event()
        self._reload_ids: set[int] = set()
        self._reload_dag_ids: set[int] = set()
        self._reload_all = True
        self._wake_advancer = asyncio.Event()
        self._dirty_dag_runs: set[int] = set()
        self._sweep_dag_runs = True
        self._listening = asyncio.Event()
        self._suspect_until: dict[str, float] = {}
        self._single_task_workers: set[str] = set()
        """Worker addresses that answered RunTasks with UNIMPLEMENTED (older workers)."""
        self._deliveries: set[asyncio.Task[None]] = set()
        self._delivery_room = asyncio.Semaphore(DELIVERIES_IN_FLIGHT)
        self._delivery_error: BaseException | None = None
        self._started: list[tuple[int, int, datetime]] = []
        """(run_id, attempt, started_at) accepted by workers, not yet marked running."""
        self._wake_marker = asyncio.Event()
        self._warned_nowhere: dict[int, None] = {}
        """Pending runs already logged as allowed by no live worker (insertion-ordered, capped)."""
        self._reap_not_before = time.monotonic() + settings.worker_lease

    def _log(self, **fields: Any) -> dict[str, Any]:
        return ctx(epoch=self.epoch, **fields)

    # ----- lifecycle -----

    async def run(self) -> None:
        await self._claim()
        log.info("leader loop started", extra=self._log())
        parts = [
            asyncio.create_task(self._listen(), name="listen"),
            asyncio.create_task(self._scheduler(), name="scheduler"),
            asyncio.create_task(self._dispatcher(), name="dispatcher"),
            asyncio.create_task(self._running_marker(), name="running-marker"),
            asyncio.create_task(self._reaper(), name="reaper"),
            asyncio.create_task(self._dag_advancer(), name="dag-advancer"),
        ]
        # Not a TaskGroup: it cancels its children once and then waits for them forever,
        # and a cancellation can be lost on Python 3.11 (see common.aio).
        try:
            done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_EXCEPTION)
            failures = [t.exception() for t in done if not t.cancelled() and t.exception()]
            fenced_off = [e for e in failures if isinstance(e, Fenced)]
            if fenced_off or failures:
                raise (fenced_off or failures)[0]
            raise RuntimeError(f"leader loop part ended: {', '.join(t.get_name() for t in done)}")
        finally:
            await cancel_and_wait(parts)
            await cancel_and_wait(self._deliveries)
            await self.clients.close()

    async def _claim(self) -> None:
        """Write our epoch into the leadership row, waiting out a PostgreSQL outage."""
        delay = 0.1
        while True:
            try:
                async with self.pool.connection() as conn:
                    if await leadership.claim(conn, self.epoch, self.settings.node_id):
                        return
                    row = await leadership.current(conn)
                raise Fenced(self.epoch, int(row["epoch"]) if row else -1)
            except DB_ERRORS as exc:
                log.warning("cannot claim leadership yet: %s", exc, extra=self._log())
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _guard(self, part: str, exc: BaseException, delay: float) -> float:
        """Back off after a database error; other errors are logged and retried too."""
        fault = db_fault(exc)
        if fault == "conflict":
            self.metrics.db_errors.inc()
            log.warning("%s retried: transaction rolled back: %s", part, exc, extra=self._log())
            return delay
        if fault == "outage":
            self.metrics.db_errors.inc()
            # Heartbeats could not be written while PostgreSQL was away: do not reap
            # workers until they have had a full lease to heartbeat again.
            self._reap_not_before = time.monotonic() + self.settings.worker_lease
            self._reload_all = True
            log.warning("%s paused: database unavailable: %s", part, exc, extra=self._log())
        else:
            log.exception("%s failed; retrying", part, extra=self._log())
        await asyncio.sleep(delay)
        return min(delay * 2, 2.0)

    # ----- LISTEN/NOTIFY -----

    async def _listen(self) -> None:
        delay = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.settings.database_url, autocommit=True, connect_timeout=5
                )
                async with conn:
                    for channel in CHANNELS:
                        await conn.execute(f"LISTEN {channel}")
                    if self._listening.is_set():
                        # A reconnect: anything sent while we were not listening is lost.
                        self._reload_all = True
                        self._sweep_dag_runs = True
                    self._listening.set()
                    self._wake_scheduler.set()
                    self._wake_dispatcher.set()
                    self._wake_advancer.set()
                    delay = 0.2
                    async for note in conn.notifies():
                        self._heard(note.channel, note.payload)
            except DB_ERRORS as exc:
                log.warning("listener lost the database: %s", exc, extra=self._log())
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _heard(self, channel: str, payload: str) -> None:
        if channel == "chronoraft_jobs":
            if payload == "all":  # POST /scheduler/reload
                self._reload_all = True
            else:
                self._reload_ids.add(int(payload))
            self._wake_scheduler.set()
        elif channel == "chronoraft_dag_defs":
            self._reload_dag_ids.add(int(payload))
            self._wake_scheduler.set()
        elif channel == "chronoraft_dags":
            self._dirty_dag_runs.add(int(payload))
            self._wake_advancer.set()
        else:
            self._wake_dispatcher.set()

    # ----- scheduler -----

    def _heap_job(self, row: dict[str, Any], now: datetime) -> HeapJob | None:
        next_fire_at = row["next_fire_at"]
        if next_fire_at is None:  # never scheduled yet: the expression decides now
            try:
                next_fire_at = cached_schedule(row["schedule"], row["timezone"]).next_after(now)
            except ScheduleError as exc:
                self._invalid_schedule(int(row["id"]), exc)
                return None
        return HeapJob(
            job_id=int(row["id"]),
            expr=row["schedule"],
            timezone=row["timezone"],
            next_fire_at=next_fire_at,
            catchup_window=float(row["catchup_window_seconds"]),
            catchup_mode=CatchupMode(row.get("catchup", "all")),
        )

    def _invalid_schedule(self, job_id: int, exc: ScheduleError) -> None:
        log.error("job has an invalid schedule: %s", exc, extra=self._log(job_id=job_id))

    async def _reload(self) -> None:
        now = utcnow()
        if self._reload_all:
            started = time.perf_counter()
            async with self.pool.connection() as conn:
                rows = await jobs_repo.schedulable(conn)
            self.heap.clear()
            self._reload_ids.clear()
            for row in rows:
                job = self._heap_job(row, now)
                if job is not None:
                    self.heap.upsert(job)
            async with self.pool.connection() as conn:
                dag_rows = await dags_repo.schedulable(conn)
            self.dag_heap.clear()
            self._reload_dag_ids.clear()
            for row in dag_rows:
                entry = self._heap_job(row, now)
                if entry is not None:
                    self.dag_heap.upsert(entry)
            self._reload_all = False
            log.info(
                "schedule heap loaded",
                extra=self._log(
                    jobs=len(self.heap), ms=round((time.perf_counter() - started) * 1000)
                ),
            )
        while self._reload_ids:
            job_id = self._reload_ids.pop()
            async with self.pool.connection() as conn:
                row = await jobs_repo.schedulable_one(conn, job_id)
            if (
                row is None
                or row["paused"]
                or row["deleted_at"] is not None
                or row["role"] != "cron"
            ):
                self.heap.remove(job_id)
                continue
            job = self._heap_job(row, now)
            if job is not None:
                self.heap.upsert(job)
        while self._reload_dag_ids:
            dag_id = self._reload_dag_ids.pop()
            async with self.pool.connection() as conn:
                row = await dags_repo.schedulable_one(conn, dag_id)
            if row is None or row["paused"] or row["deleted_at"] is not None:
                self.dag_heap.remove(dag_id)
                continue
            entry = self._heap_job(row, now)
            if entry is not None:
                self.dag_heap.upsert(entry)
        self.metrics.heap_jobs.set(len(self.heap) + len(self.dag_heap))

    async def _scheduler(self) -> None:
        # Load the heap only once LISTEN is in place, so no edit falls between the two.
        await self._listening.wait()
        delay = 0.1

        async def one_pass() -> float:
            nonlocal delay
            try:
                if self._reload_all or self._reload_ids or self._reload_dag_ids:
                    await self._reload()
                await self._fire_due()
                await self._fire_due_dags()
                delay = 0.1
            except Fenced:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one error
                delay = await self._guard("scheduler", exc, delay)
                return 0.0
            dues = [d for d in (self.heap.next_due(), self.dag_heap.next_due()) if d is not None]
            timeout = self.settings.tick_interval
            if dues:
                timeout = max(0.0, min(timeout, min(dues) - time.time()))
            return timeout

        await run_in_passes(self._wake_scheduler, one_pass)

    async def _fire_due(self) -> None:
        now = utcnow()
        due = self.heap.pop_due(now)
        if not due:
            return
        started = time.perf_counter()
        rows: list[runs_repo.SlotRow] = []
        advances: list[tuple[HeapJob, datetime, int]] = []
        actions: Counter[str] = Counter()  # one metric update per action, not per slot
        for job in due:
            try:
                schedule = job.schedule
            except ScheduleError as exc:  # popped: it stays out until the job is edited
                self._invalid_schedule(job.job_id, exc)
                continue
            plan = plan_due(schedule, job.next_fire_at, now, job.catchup_window, job.catchup_mode)
            missed = plan.omitted_skips
            for decision in plan.decisions:
                skipped = decision.action == "skip"
                rows.append(
                    runs_repo.SlotRow(
                        job_id=job.job_id,
                        slot=decision.slot,
                        trigger="catchup" if decision.action == "late" else "schedule",
                        state="skipped" if skipped else "pending",
                        late=decision.action == "late",
                        error=decision.reason if skipped else None,
                    )
                )
                actions[decision.action] += 1
                missed += skipped
            if plan.omitted_skips:
                self.metrics.slots.labels("skip").inc(plan.omitted_skips)
                log.warning(
                    "slots older than the catch-up window not recorded one by one",
                    extra=self._log(job_id=job.job_id, omitted=plan.omitted_skips),
                )
            advances.append((job, plan.next_fire_at, missed))
        for action, count in actions.items():
            self.metrics.slots.labels(action).inc(count)
        try:
            async with fenced(self.pool, self.epoch) as conn:
                await runs_repo.insert_slots(conn, rows)
                moved = await jobs_repo.advance(
                    conn,
                    [j.job_id for j, _, _ in advances],
                    [j.next_fire_at for j, _, _ in advances],
                    [n for _, n, _ in advances],
                    [m for _, _, m in advances],
                )
        except BaseException:
            for job in due:  # nothing was written: put them back to retry the same slots
                self.heap.upsert(job)
            raise
        for job, new_next, _ in advances:
            if job.job_id in moved:
                job.next_fire_at = new_next
                self.heap.upsert(job)
            else:  # edited (or deleted) meanwhile: take PostgreSQL's word for it
                self._reload_ids.add(job.job_id)
        self.metrics.tick_seconds.observe(time.perf_counter() - started)
        self._wake_dispatcher.set()

    async def _fire_due_dags(self) -> None:
        """A DAG run per due slot of each scheduled DAG (one per slot, whoever tries)."""
        now = utcnow()
        for entry in self.dag_heap.pop_due(now, limit=500):
            try:
                schedule = entry.schedule
            except ScheduleError as exc:
                self._invalid_schedule(entry.job_id, exc)
                continue
            plan = plan_due(schedule, entry.next_fire_at, now, entry.catchup_window)
            try:
                async with fenced(self.pool, self.epoch) as conn:
                    for decision in plan.decisions:
                        skipped = decision.action == "skip"
                        await dag_runs_repo.fire_slot(
                            conn,
                            entry.job_id,
                            decision.slot,
                            "catchup" if decision.action == "late" else "schedule",
                            decision.reason if skipped else None,
                        )
                        self.metrics.slots.labels(decision.action).inc()
                    moved = await dags_repo.advance(
                        conn, entry.job_id, entry.next_fire_at, plan.next_fire_at
                    )
            except BaseException:
                self.dag_heap.upsert(entry)  # nothing was written: retry the same slots
                raise
            if moved:
                entry.next_fire_at = plan.next_fire_at
                self.dag_heap.upsert(entry)
            else:
                self._reload_dag_ids.add(entry.job_id)

    # ----- DAG runs -----

    async def _dag_advancer(self) -> None:
        """Move DAG runs on: start ready nodes, block those below a failure, finish runs.

        Woken by NOTIFY when a node finishes or an operator acts; every few seconds, and
        after taking over or reconnecting, it sweeps every running DAG run, so a lost
        notification only delays a node, never strands it.
        """
        await self._listening.wait()
        delay = 0.1
        last_sweep = 0.0

        async def one_pass() -> float:
            nonlocal delay, last_sweep
            try:
                if self._sweep_dag_runs or time.monotonic() - last_sweep > DAG_SWEEP_SECONDS:
                    async with self.pool.connection() as conn:
                        self._dirty_dag_runs.update(await dag_runs_repo.running_ids(conn))
                    self._sweep_dag_runs = False
                    last_sweep = time.monotonic()
                promoted = 0
                while self._dirty_dag_runs:
                    dag_run_id = min(self._dirty_dag_runs)
                    async with fenced(self.pool, self.epoch) as conn:
                        step = await dag_runs_repo.advance(conn, dag_run_id, utcnow())
                    self._dirty_dag_runs.discard(dag_run_id)
                    promoted += step.promoted
                    if step.finished:
                        self.metrics.dag_runs.labels(step.finished).inc()
                        log.info(
                            "DAG run finished",
                            extra=self._log(dag_run_id=dag_run_id, state=step.finished),
                        )
                if promoted:
                    self._wake_dispatcher.set()
                delay = 0.1
            except Fenced:
                raise
            except Exception as exc:  # noqa: BLE001
                self._sweep_dag_runs = True
                delay = await self._guard("dag advancer", exc, delay)
                return 0.0
            return DAG_SWEEP_SECONDS

        await run_in_passes(self._wake_advancer, one_pass)

    # ----- dispatcher -----

    async def _dispatcher(self) -> None:
        delay = 0.1
        swept_at = 0.0

        async def one_pass() -> float:
            nonlocal delay, swept_at
            try:
                while True:
                    self._raise_delivery_error()
                    if time.monotonic() - swept_at >= OVERDUE_SWEEP_SECONDS:
                        # One sweep a second, between batches: sweeping until none is left
                        # never reached the dispatch when slots expired faster than a sweep
                        # took, and sweeping only between passes never swept while a
                        # backlog kept every batch full.
                        swept_at = time.monotonic()
                        await self._skip_overdue()
                    if await self._dispatch_batch() < DISPATCH_BATCH:
                        break
                delay = 0.1
            except Fenced:
                raise
            except Exception as exc:  # noqa: BLE001
                delay = await self._guard("dispatcher", exc, delay)
                return 0.0
            return 0.5

        await run_in_passes(self._wake_dispatcher, one_pass)

    async def _skip_overdue(self) -> None:
        """Skip, in bulk, the slot runs past their starting deadline (up to a limit)."""
        async with fenced(self.pool, self.epoch) as conn:
            rows = await runs_repo.overdue_slots(conn, ON_TIME_GRACE, OVERDUE_SWEEP_LIMIT)
            by_job: dict[int, list[dict[str, Any]]] = {}
            for run in rows:
                by_job.setdefault(int(run["job_id"]), []).append(run)
            missed = _split_missed(by_job, utcnow())
            await self._record_missed(conn, missed, {})

    async def _record_missed(
        self,
        conn: Any,
        missed: dict[int, list[tuple[int, str]]],
        counts: dict[int, jobs_repo.SkipCounts],
    ) -> int:
        """Skip the runs past their starting deadline and count them on their jobs (with
        any other skips of the batch in ``counts``); one log line, not one per run: under
        overload there can be thousands a second."""
        for job_id, runs in missed.items():
            counts[job_id] = counts.get(job_id, jobs_repo.SkipCounts())._replace(missed=len(runs))
        expired = [skip for runs in missed.values() for skip in runs]
        await runs_repo.skip_pending(conn, expired)
        await jobs_repo.count_skips(conn, counts)
        if expired:
            self.metrics.slots.labels("deadline_skip").inc(len(expired))
            log.info(
                "%d runs skipped: not started within their catch-up window",
                len(expired),
                extra=self._log(jobs=len(missed), first_run_id=expired[0][0]),
            )
        return len(expired)

    async def _dispatch_batch(self) -> int:
        """Dispatch one batch of due pending runs; returns how many were settled.

        Overlap policies and concurrency caps are decided here, against the active runs
        PostgreSQL has right now, inside the same fenced transaction that dispatches.
        """
        now_mono = time.monotonic()
        excluded = frozenset(w for w, until in self._suspect_until.items() if until > now_mono)
        async with fenced(self.pool, self.epoch) as conn:
            pending = await runs_repo.claim_pending(conn, DISPATCH_BATCH)
            if not pending:
                return 0
            plan = await self._apply_policies(conn, pending)
            live = await workers_repo.live(conn, self.settings.worker_lease)
            loads = await runs_repo.active_counts(conn)
            slots = [worker_slot(w) for w in live]
            startable = plan.start
            needs = [run_needs(r) for r in startable]
            chosen = placement.place(needs, slots, loads, excluded)
            assignments = [(r, w) for r, w in zip(startable, chosen, strict=True) if w is not None]
            stranded = [
                int(r["id"])
                for r, need, w in zip(startable, needs, chosen, strict=True)
                if w is None and not placement.placeable(need, slots)
            ]
            # They wait for a worker that can take them, behind the runs that can start now.
            await runs_repo.defer_pending(conn, stranded, STRANDED_RECHECK_SECONDS)
            await runs_repo.mark_dispatched(
                conn, [(r["id"], w.worker_id) for r, w in assignments], self.epoch
            )
        self._note_unplaceable(startable, needs, chosen, slots)
        if plan.cancel:
            asyncio.create_task(self._send_cancels(), name="overlap-cancel")
        if assignments:
            # Deliver in the background: the next batch is claimed and placed while the
            # workers spawn this one (waiting for a whole wave left freed slots idle).
            await self._delivery_room.acquire()
            task = asyncio.create_task(self._deliver_batch(assignments), name="deliver")
            self._deliveries.add(task)
            task.add_done_callback(self._delivery_done)
        return len(assignments) + plan.settled

    async def _deliver_batch(
        self, assignments: list[tuple[dict[str, Any], placement.WorkerSlot]]
    ) -> None:
        """RunTasks to every worker of a batch at once; the started runs are handed to the
        running marker."""
        try:
            by_worker: dict[str, tuple[placement.WorkerSlot, list[dict[str, Any]]]] = {}
            for run, worker in assignments:
                by_worker.setdefault(worker.worker_id, (worker, []))[1].append(run)
            answers = await asyncio.gather(
                *(self._deliver(worker, runs) for worker, runs in by_worker.values())
            )
            started = [took for answer in answers for took in answer if took is not None]
            if started:
                self._started.extend(started)
                self._wake_marker.set()
        finally:
            self._delivery_room.release()

    async def _running_marker(self) -> None:
        """Mark the started runs running, RUNNING_MARK_DELAY at a time, one transaction each."""
        delay = 0.1
        while True:
            await self._wake_marker.wait()
            await asyncio.sleep(RUNNING_MARK_DELAY)
            self._wake_marker.clear()
            started, self._started = self._started, []
            try:
                async with fenced(self.pool, self.epoch) as conn:
                    await runs_repo.mark_running(conn, started)
                delay = 0.1
            except Fenced:
                raise
            except Exception as exc:  # noqa: BLE001 - kept for the next try
                self._started[:0] = started
                self._wake_marker.set()
                delay = await self._guard("running marker", exc, delay)

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        """A delivery's failure is the dispatcher's: it re-raises it (Fenced ends the loop,
        anything else backs off as if the dispatcher had failed itself)."""
        self._deliveries.discard(task)
        if not task.cancelled() and task.exception() is not None and self._delivery_error is None:
            self._delivery_error = task.exception()
            self._wake_dispatcher.set()

    def _raise_delivery_error(self) -> None:
        error, self._delivery_error = self._delivery_error, None
        if error is not None:
            raise error

    def _note_unplaceable(
        self,
        runs: list[dict[str, Any]],
        needs: list[placement.RunNeeds],
        chosen: list[placement.WorkerSlot | None],
        slots: list[placement.WorkerSlot],
    ) -> None:
        """Warn, once per run, about a run that stays pending because every live worker
        matching its labels has an allowlist that refuses its command.

        Such a run waits like a run whose labels match no worker (it is placed as soon as a
        worker that allows it heartbeats); the warning tells the operator why it waits.
        """
        for run, need, worker in zip(runs, needs, chosen, strict=True):
            run_id = int(run["id"])
            if worker is not None:
                self._warned_nowhere.pop(run_id, None)
                continue
            if run_id in self._warned_nowhere or not placement.allowed_nowhere(need, slots):
                continue
            self._warned_nowhere[run_id] = None
            while len(self._warned_nowhere) > WARNED_RUNS_KEPT:
                del self._warned_nowhere[next(iter(self._warned_nowhere))]
            log.warning(
                "run %d stays pending: no live worker allows command %r",
                run_id,
                need.command,
                extra=self._log(run_id=run_id, job_id=run["job_id"]),
            )

    async def _apply_policies(self, conn: Any, pending: list[dict[str, Any]]) -> _BatchPlan:
        """Split a claimed batch by the starting deadline, each job's overlap policy and
        the concurrency caps."""
        by_job: dict[int, list[dict[str, Any]]] = {}
        for run in pending:
            by_job.setdefault(int(run["job_id"]), []).append(run)
        ordered = [j for j, runs in by_job.items() if runs[0]["overlap"] != "allow"]
        if ordered:  # a buffer must see its deferred runs too, to start the oldest slot first
            for job_id in ordered:
                by_job[job_id] = []
            for run in await runs_repo.pending_of_jobs(conn, ordered, 2 * WAIT_RECHECK_SECONDS):
                by_job[int(run["job_id"])].append(run)
            pending = [r for runs in by_job.values() for r in runs]
        missed = _split_missed(by_job, utcnow())
        if missed:  # the rest keep the claim's (priority) order, which the cap below cuts
            gone = {run_id for runs in missed.values() for run_id, _ in runs}
            pending = [r for r in pending if r["id"] not in gone]
        active = await runs_repo.active_of_jobs(conn, [j for j, runs in by_job.items() if runs])
        start_ids: set[int] = set()
        skips: list[tuple[int, str]] = []
        waits: list[int] = []
        cancels: list[int] = []
        counts: dict[int, jobs_repo.SkipCounts] = {}
        for job_id, runs in by_job.items():
            if not runs:
                continue
            running = active.get(job_id, [])
            decision = overlap.decide(
                OverlapPolicy(runs[0]["overlap"]),
                [overlap.PendingRun(r["id"], r["scheduled_for"].timestamp()) for r in runs],
                len(running),
                int(runs[0]["max_concurrency"]),
            )
            start_ids.update(decision.start)
            skips.extend(decision.skip)
            waits.extend(decision.wait)
            if decision.cancel_active:
                cancels.extend(int(r["id"]) for r in running)
            counts[job_id] = jobs_repo.SkipCounts(
                overlap=decision.skipped_by_overlap, buffer_dropped=decision.dropped_by_buffer
            )
        start = [r for r in pending if r["id"] in start_ids]
        cap = self.settings.max_running
        if cap > 0:
            # Runs over the cluster-wide cap stay where they are in the queue (not deferred):
            # deferring them let a newer slot that arrived meanwhile overtake them again and
            # again (a paused job's buffered run starved behind an active job's new slots).
            room = max(0, cap - await runs_repo.active_total(conn))
            start = start[:room]
        await runs_repo.skip_pending(conn, skips)
        await runs_repo.defer_pending(conn, waits, WAIT_RECHECK_SECONDS)
        await runs_repo.request_cancel_many(conn, cancels)
        expired = await self._record_missed(conn, missed, counts)
        for run_id, reason in skips:
            self.metrics.slots.labels("overlap_skip").inc()
            log.info("run skipped: %s", reason, extra=self._log(run_id=run_id))
        return _BatchPlan(start=start, settled=len(skips) + expired, cancel=bool(cancels))

    def _task_request(self, run: dict[str, Any]) -> pb.RunTaskRequest:
        args = run["args"]
        return pb.RunTaskRequest(
            run_id=run["id"],
            attempt=run["attempt"],
            epoch=self.epoch,
            job_id=run["job_id"],
            command=run["command"],
            args=list(args or []),
            use_shell=args is None,
            env=task_env(run),
            kind="http" if run["kind"] == "http" else "cmd",
            http=http_spec(run),
            timeout_seconds=float(run["timeout_seconds"] or 0),
            output_limit_bytes=self.settings.output_limit_bytes,
            cwd=run["cwd"] or "",
            scheduled_for=run["scheduled_for"].timestamp(),
        )

    async def _deliver(
        self, worker: placement.WorkerSlot, runs: list[dict[str, Any]]
    ) -> list[tuple[int, int, datetime] | None]:
        """Hand one worker its runs of a batch: one RunTasks call, not one call per run.

        Per-call gRPC overhead on both ends was a large part of the cost of a run. A worker
        that does not know RunTasks (UNIMPLEMENTED: an older version during a rolling
        upgrade) gets one RunTask per run, as before. Returns, per run, (run_id, attempt,
        started_at) when the worker took it.
        """
        stub = self.clients.stub(worker.address)
        requests = [self._task_request(run) for run in runs]
        started = time.perf_counter()
        if worker.address not in self._single_task_workers:
            try:
                batch = await stub.RunTasks(pb.RunTasksRequest(tasks=requests), timeout=5.0)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    return [await self._settle(run, worker, exc, started) for run in runs]
                self._single_task_workers.add(worker.address)
            else:
                replies: list[pb.RunTaskReply | grpc.aio.AioRpcError] = list(batch.replies)
                if len(replies) != len(runs):  # never expected: leave them to the ack timeout
                    log.error("RunTasks answered %d of %d", len(replies), len(runs))
                    return [None] * len(runs)
                return [
                    await self._settle(run, worker, reply, started)
                    for run, reply in zip(runs, replies, strict=True)
                ]

        async def one(run: dict[str, Any], request: pb.RunTaskRequest) -> Any:
            try:
                return await stub.RunTask(request, timeout=5.0)
            except grpc.aio.AioRpcError as exc:
                return exc

        replies = await asyncio.gather(*(one(r, q) for r, q in zip(runs, requests, strict=True)))
        return [
            await self._settle(run, worker, reply, started)
            for run, reply in zip(runs, replies, strict=True)
        ]

    async def _settle(
        self,
        run: dict[str, Any],
        worker: placement.WorkerSlot,
        reply: pb.RunTaskReply | grpc.aio.AioRpcError,
        started: float,
    ) -> tuple[int, int, datetime] | None:
        """What a worker's answer to one run means; returns (run_id, attempt, started_at)
        when the worker took it."""
        fields = self._log(
            run_id=run["id"], job_id=run["job_id"], attempt=run["attempt"], worker=worker.worker_id
        )
        if isinstance(reply, grpc.aio.AioRpcError):
            code = reply.code()
            self.metrics.grpc_errors.labels(code.name).inc()
            if code == grpc.StatusCode.UNAVAILABLE:  # never reached the worker: safe to move
                self._suspect_until[worker.worker_id] = time.monotonic() + 2.0
                await self._requeue(run, f"worker {worker.worker_id} unreachable", 0.2)
            elif code in REFUSED_BEFORE_RUNNING:  # a wrong gRPC secret or certificate
                log.error("worker refused our credentials: %s", reply.details(), extra=fields)
                self._suspect_until[worker.worker_id] = time.monotonic() + 30.0
                await self._requeue(run, f"worker {worker.worker_id} refused credentials", 0.2)
            else:  # may have started: the heartbeat or the ack timeout will tell
                log.warning("RunTask outcome unknown: %s", code.name, extra=fields)
            self.metrics.dispatched.labels("error").inc()
            return None
        self.metrics.dispatch_latency.observe(time.perf_counter() - started)
        if reply.accepted:
            self.metrics.dispatched.labels("accepted").inc()
            started_at = datetime.fromtimestamp(reply.started_at or time.time(), UTC)
            lateness = (started_at - run["scheduled_for"]).total_seconds()
            if lateness >= 0:
                self.metrics.dispatch_lateness.observe(lateness)
            log.debug("run dispatched", extra=fields)
            return (run["id"], run["attempt"], started_at)
        self.metrics.dispatched.labels(reply.reason or "refused").inc()
        if reply.reason == "stale_epoch" and reply.highest_epoch > self.epoch:
            await self._requeue(run, "refused by worker: stale epoch", 0.0)
            raise Fenced(self.epoch, int(reply.highest_epoch))
        # Placement already skips workers whose heartbeat allowlist refuses the command; a
        # not_allowed here means the worker's list changed since (or an older worker that
        # does not report it). Either way retrying there would bounce forever.
        if reply.reason in ("not_allowed", "unsupported_kind"):
            async with fenced(self.pool, self.epoch) as conn:
                await _close_attempt(
                    conn,
                    run,
                    "failed",
                    f"refused by {worker.worker_id}: {reply.reason}",
                    worker.worker_id,
                )
            self._wake_dispatcher.set()
            return None
        self._suspect_until[worker.worker_id] = time.monotonic() + 0.5
        await self._requeue(run, f"refused by {worker.worker_id}: {reply.reason}", 0.2)
        return None

    async def _requeue(self, run: dict[str, Any], error: str, delay: float) -> None:
        async with fenced(self.pool, self.epoch) as conn:
            await runs_repo.requeue_same_attempt(conn, run["id"], run["attempt"], error, delay)
        self._wake_dispatcher.set()

    # ----- reaper -----

    async def _reaper(self) -> None:
        delay = 0.5
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._reap()
                await self._send_cancels()
                delay = 0.5
            except Fenced:
                raise
            except Exception as exc:  # noqa: BLE001
                delay = await self._guard("reaper", exc, delay)

    async def _reap(self) -> None:
        s = self.settings
        async with fenced(self.pool, self.epoch) as conn:
            if time.monotonic() >= self._reap_not_before:
                for run in await runs_repo.on_lost_workers(conn, s.worker_lease):
                    error = f"worker {run['worker_id']} lost: no heartbeat for {s.worker_lease:g}s"
                    outcome = await _close_attempt(conn, run, "failed", error)
                    self.metrics.reaped.labels("worker_lost").inc()
                    if outcome == "retrying":
                        self.metrics.retries.labels("worker_lost").inc()
                    log.warning(
                        "run taken back from lost worker",
                        extra=self._log(run_id=run["id"], worker=run["worker_id"], outcome=outcome),
                    )
            for run in await runs_repo.unacknowledged(conn, s.dispatch_ack_timeout):
                await runs_repo.requeue_same_attempt(
                    conn, run["id"], run["attempt"], "worker never confirmed the start", 0.0
                )
                self.metrics.reaped.labels("unacknowledged").inc()
        self._wake_dispatcher.set()

    async def _send_cancels(self) -> None:
        async with self.pool.connection() as conn:
            wanted = await runs_repo.cancel_requested(conn)
        for run in wanted:
            request = pb.CancelTaskRequest(
                run_id=run["id"], attempt=run["attempt"], epoch=self.epoch
            )
            try:
                reply = await self.clients.stub(run["address"]).CancelTask(request, timeout=3.0)
            except grpc.aio.AioRpcError as exc:
                self.metrics.grpc_errors.labels(exc.code().name).inc()
                continue
            if not reply.found:  # the worker never had it: nothing to kill, close it here
                async with fenced(self.pool, self.epoch) as conn:
                    await _close_attempt(conn, run, "cancelled", "cancelled by request")
