"""WorkerService: the leader's handle on this worker (RunTask, CancelTask).

The rules a controller can rely on:

* Fencing: a call whose epoch is lower than the highest this worker has ever seen is refused
  (``stale_epoch``); a higher epoch raises the fence and is persisted before the reply, so a
  restarted worker still refuses a deposed leader.
* Idempotency: RunTask for an attempt that is running, or finished here (still spooled, or
  remembered since this process started), answers ``accepted=True, reason="duplicate"`` and
  does not start it again.
* Refusals: ``draining`` (shutting down), ``at_capacity`` (``worker_concurrency`` attempts
  running), ``superseded`` (a newer attempt of the same run is running here),
  ``unsupported_kind`` (a task kind this worker cannot run; retrying here will not help),
  ``not_allowed`` (a command outside CHRONORAFT_WORKER_ALLOWED_COMMANDS; neither will).
* Kinds: ``cmd`` (also the empty kind) runs a process group, ``http`` sends one request;
  both end in the same TaskResult, so spooling, reporting and cancelling do not care which.
* A newer attempt of a run that is still running here cancels the older attempt.
* Every accepted attempt ends in exactly one result in the spool (``cancelled`` included),
  which the reporter then delivers via ReportResult.
* An attempt counts as started (RunTask answers) only once the mark of its process group is
  on disk, and as finished (its slot free) only once its result is durably spooled and the
  mark dropped. Both go through group commits: the attempts that start, or end, in the same
  turn of the event loop share one write in a worker thread (for results, one fsync of the
  spool directory, and the marks dropped in the same hand-off).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from common.aio import wait_event, within
from common.exec_policy import check_patterns, refusal
from common.logging import ctx
from common.settings import Settings
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc
from worker.executor import (
    KILL_GRACE_SECONDS,
    CancelToken,
    StartedProcess,
    TaskResult,
    TaskSpec,
    TaskState,
    execute,
)
from worker.group_commit import GroupCommit
from worker.http_executor import HttpTaskSpec, execute_http
from worker.metrics import WorkerMetrics
from worker.orphans import Mark, RunningMarks, StartTicks
from worker.spool import Spool

log = logging.getLogger(__name__)

REASON_STALE_EPOCH = "stale_epoch"
REASON_DRAINING = "draining"
REASON_AT_CAPACITY = "at_capacity"
REASON_SUPERSEDED = "superseded"
REASON_UNSUPPORTED_KIND = "unsupported_kind"
REASON_NOT_ALLOWED = "not_allowed"
"""The command is not on this worker's allowlist (CHRONORAFT_WORKER_ALLOWED_COMMANDS)."""
REASON_DUPLICATE = "duplicate"
"""Set on an *accepted* reply: the attempt was already running or finished here."""

KIND_CMD = "cmd"
KIND_HTTP = "http"

MAX_OUTPUT_BYTES = 1_048_576
"""Hard cap on kept output whatever a job asks for: the result must fit a gRPC message
(4 MiB by default, and undecodable bytes grow 3x as replacement characters), or it could
never be delivered and would sit in the spool forever."""
_FINISHED_MEMORY = 10_000
_START_WAIT = 3.0
_SPOOL_RETRY_MAX = 5.0
_RESULT_FLUSHERS = 4
"""Result writes in flight at once. Each file needs an fsync of its own, and a single flusher
doing a batch's fsyncs one after the other held every slot of the batch that long
(bench.worker_spawn on a 2-core box: 340-450 runs/s with one flusher, 610-780 with four).
Not more: the marks, the reporter and the epoch share the default pool (6 threads there)."""

AttemptKey = tuple[int, int]
AttemptSpec = TaskSpec | HttpTaskSpec


@dataclass(eq=False)
class _Attempt:
    spec: AttemptSpec
    epoch: int
    token: CancelToken = field(default_factory=CancelToken)
    started: asyncio.Future[float] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    task: asyncio.Task[None] | None = None
    superseded: bool = False
    marked: asyncio.Future[None] | None = None
    """The write of this attempt's running mark (None: no process, or no marks kept)."""

    @property
    def key(self) -> AttemptKey:
        return (self.spec.run_id, self.spec.attempt)


def attempt_spec_from_request(
    request: pb.RunTaskRequest, default_output_limit: int
) -> AttemptSpec | None:
    """The executor's input for the request's kind; None for a kind this worker cannot run."""
    kind = request.kind or KIND_CMD
    if kind == KIND_CMD:
        return task_spec_from_request(request, default_output_limit)
    if kind == KIND_HTTP:
        return http_spec_from_request(request, default_output_limit)
    return None


def _output_limit(request: pb.RunTaskRequest, default_output_limit: int) -> int:
    """A request without an output limit gets the worker's default; none exceeds the cap."""
    limit = request.output_limit_bytes if request.output_limit_bytes > 0 else default_output_limit
    return max(0, min(limit, MAX_OUTPUT_BYTES))


def task_spec_from_request(request: pb.RunTaskRequest, default_output_limit: int) -> TaskSpec:
    """The cmd executor's input."""
    return TaskSpec(
        run_id=request.run_id,
        attempt=request.attempt,
        command=request.command,
        args=tuple(request.args),
        use_shell=request.use_shell,
        env=dict(request.env),
        timeout_seconds=request.timeout_seconds,
        output_limit_bytes=_output_limit(request, default_output_limit),
        cwd=request.cwd,
    )


def http_spec_from_request(request: pb.RunTaskRequest, default_output_limit: int) -> HttpTaskSpec:
    """The http executor's input; the cmd fields (command, env, cwd...) play no part."""
    http = request.http
    return HttpTaskSpec(
        run_id=request.run_id,
        attempt=request.attempt,
        url=http.url,
        method=http.method.upper() or "GET",
        headers=dict(http.headers),
        body=http.body,
        expected_status=http.expected_status,
        timeout_seconds=request.timeout_seconds,
        output_limit_bytes=_output_limit(request, default_output_limit),
    )


def describe(spec: AttemptSpec) -> str:
    """What an attempt does, for logs: the command, or the method and URL."""
    return spec.describe() if isinstance(spec, HttpTaskSpec) else spec.command


def report_from_result(
    worker_id: str, spec: AttemptSpec, result: TaskResult
) -> pb.ReportResultRequest:
    """The wire form of a result, as it is spooled and then sent to ReportResult."""
    return pb.ReportResultRequest(
        worker_id=worker_id,
        run_id=spec.run_id,
        attempt=spec.attempt,
        state=str(result.state),
        has_exit_code=result.exit_code is not None,
        exit_code=result.exit_code if result.exit_code is not None else 0,
        output=result.output,
        output_truncated=result.output_truncated,
        error=result.error,
        started_at=result.started_at,
        finished_at=result.finished_at,
    )


class WorkerService(pb_grpc.WorkerServiceServicer):
    """Owns the attempts running in this process and the epoch fence."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        metrics: WorkerMetrics,
        on_result: Callable[[], None] = lambda: None,
        *,
        marks: RunningMarks | None = None,
        kill_grace: float = KILL_GRACE_SECONDS,
    ) -> None:
        self._worker_id = settings.effective_worker_id
        self._concurrency = settings.worker_concurrency
        self._allowed = check_patterns(
            settings.worker_allowed_commands, "CHRONORAFT_WORKER_ALLOWED_COMMANDS"
        )
        self._default_output_limit = settings.output_limit_bytes
        self._spool = spool
        self._metrics = metrics
        self._on_result = on_result
        self._marks = marks
        self._mark_writes: GroupCommit[Mark | AttemptKey] | None = (
            None if marks is None else GroupCommit(functools.partial(_write_marks, marks))
        )
        self._result_writes: GroupCommit[_Finished] = GroupCommit(
            functools.partial(_store_results, spool, marks), flushers=_RESULT_FLUSHERS
        )
        self._kill_grace = kill_grace
        self._start_ticks = StartTicks()
        self._attempts: dict[AttemptKey, _Attempt] = {}
        self._by_run: dict[int, list[_Attempt]] = {}
        """The attempts in ``_attempts`` by run: RunTask looks at its run's only."""
        self._busy = 0
        """Attempts in ``_attempts`` not superseded: what counts against the capacity."""
        self._finished: OrderedDict[AttemptKey, float] = OrderedDict()
        self._highest_epoch = spool.load_epoch()
        self._persisted_epoch = self._highest_epoch
        self._persist_lock = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False
        metrics.capacity.set(self._concurrency)
        metrics.highest_epoch.set(self._highest_epoch)

    # --- views used by heartbeat and shutdown --------------------------------------------

    @property
    def capacity(self) -> int:
        return self._concurrency

    @property
    def highest_epoch(self) -> int:
        return self._highest_epoch

    @property
    def allowed_commands(self) -> tuple[str, ...]:
        """This worker's allowlist; empty means no allowlist (every command runs)."""
        return self._allowed

    def running(self) -> list[AttemptKey]:
        """Attempts with a live process (superseded ones included until they are gone)."""
        return sorted(self._attempts)

    def start_draining(self) -> None:
        """Refuse new work from now on; running attempts carry on."""
        if not self.draining:
            log.info("draining: no new attempts accepted", extra=ctx(running=len(self._attempts)))
        self.draining = True
        self._metrics.draining.set(1)

    def cancel_all(self, reason: str) -> int:
        """Stop every running attempt (each is still reported, as cancelled)."""
        count = 0
        for attempt in list(self._attempts.values()):
            count += attempt.token.cancel(reason)
        return count

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no attempt is running and every result is spooled; False on timeout."""
        return await wait_event(self._idle, timeout)

    async def abort(self) -> None:
        """Last resort at teardown: cancel the attempt tasks (their groups get SIGKILL)."""
        tasks = [a.task for a in self._attempts.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- epoch fence -----------------------------------------------------------------------

    async def observe_epoch(self, epoch: int) -> bool:
        """Raise the fence to ``epoch`` if higher; False if ``epoch`` is stale.

        Returns only once the fence is on disk, so nothing is accepted under an epoch a
        restart would forget. Also fed from heartbeat replies (the epoch in PostgreSQL),
        which fences a deposed leader even before the new one has called this worker.
        """
        if epoch < self._highest_epoch:
            return False
        if epoch > self._highest_epoch:
            log.info(
                "new leader epoch %d (was %d)", epoch, self._highest_epoch, extra=ctx(epoch=epoch)
            )
            self._highest_epoch = epoch
            self._metrics.highest_epoch.set(epoch)
        if self._persisted_epoch < epoch:
            async with self._persist_lock:
                target = self._highest_epoch
                if self._persisted_epoch < target:
                    await asyncio.to_thread(self._spool.save_epoch, target)
                    self._persisted_epoch = target
        # Another call may have raised the fence while we were writing.
        return epoch >= self._highest_epoch

    # --- RPCs ------------------------------------------------------------------------------

    async def RunTasks(  # noqa: N802 - gRPC method name
        self, request: pb.RunTasksRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunTasksReply:
        """A dispatch batch's runs for this worker: each answered exactly as by RunTask.

        Admitted one after the other (admission never waits for a process), then the replies
        wait together for the processes to be started: no task, shield and timer per run.
        """
        admitted = [await self._admit(task) for task in request.tasks]
        waiting = {
            a.attempt.started
            for a in admitted
            if isinstance(a, _Admitted) and not a.attempt.started.done()
        }
        if waiting:
            await asyncio.wait(waiting, timeout=_START_WAIT)
        replies = []
        for answer in admitted:
            if isinstance(answer, _Admitted):
                if answer.duplicate:
                    await asyncio.shield(answer.attempt.started)
                answer = self._started_reply(answer)
            replies.append(answer)
        return pb.RunTasksReply(replies=replies)

    async def RunTask(  # noqa: N802 - gRPC method name
        self, request: pb.RunTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunTaskReply:
        admitted = await self._admit(request)
        if not isinstance(admitted, _Admitted):
            return admitted
        if admitted.duplicate:
            await asyncio.shield(admitted.attempt.started)
        else:
            with contextlib.suppress(TimeoutError):
                await within(asyncio.shield(admitted.attempt.started), _START_WAIT)
        return self._started_reply(admitted)

    async def _admit(self, request: pb.RunTaskRequest) -> pb.RunTaskReply | _Admitted:
        """Refuse, answer a finished duplicate, or start the attempt (or find it running)."""
        key = (request.run_id, request.attempt)
        log_ctx = ctx(
            run_id=request.run_id,
            job_id=request.job_id,
            attempt=request.attempt,
            epoch=request.epoch,
        )
        if not await self.observe_epoch(request.epoch):
            log.warning(
                "RunTask refused: epoch %d < %d", request.epoch, self._highest_epoch, extra=log_ctx
            )
            return self._refuse(REASON_STALE_EPOCH)
        spec = attempt_spec_from_request(request, self._default_output_limit)
        if spec is None:
            log.warning("RunTask refused: unsupported kind %r", request.kind, extra=log_ctx)
            return self._refuse(REASON_UNSUPPORTED_KIND)
        if isinstance(spec, TaskSpec) and self._allowed:
            refused = refusal(self._allowed, spec.command, None if spec.use_shell else spec.args)
            if refused is not None:
                log.warning("RunTask refused: %s", refused, extra=log_ctx)
                return self._refuse(REASON_NOT_ALLOWED)

        # Every decision below is taken without an await in between, up to the registration of
        # the attempt: otherwise two identical RunTask calls could both start it.
        running = self._attempts.get(key)
        if running is not None:
            return _Admitted(request, running, duplicate=True)
        finished_at = self._finished_started_at(key)
        if finished_at is not None:
            return self._accepted(finished_at, REASON_DUPLICATE)
        if self.draining:
            return self._refuse(REASON_DRAINING)

        same_run = self._by_run.get(request.run_id, [])
        if any(a.spec.attempt > request.attempt for a in same_run):
            log.info("RunTask refused: a newer attempt of this run is running", extra=log_ctx)
            return self._refuse(REASON_SUPERSEDED)
        # Older attempts of this run are about to be cancelled: they do not count.
        busy = self._busy - sum(1 for a in same_run if not a.superseded)
        if busy >= self._concurrency:
            return self._refuse(REASON_AT_CAPACITY)
        for older in same_run:
            if not older.superseded:
                older.superseded = True
                self._busy -= 1
            older.token.cancel(f"superseded by attempt {request.attempt}")
            log.info("cancelling attempt %d: superseded", older.spec.attempt, extra=log_ctx)

        attempt = _Attempt(spec=spec, epoch=request.epoch)
        self._attempts[key] = attempt
        self._by_run.setdefault(request.run_id, []).append(attempt)
        self._busy += 1
        self._idle.clear()
        self._metrics.running.set(len(self._attempts))
        self._metrics.tasks_started.inc()
        attempt.task = asyncio.create_task(
            self._run_attempt(attempt), name=f"attempt-{request.run_id}-{request.attempt}"
        )
        return _Admitted(request, attempt, duplicate=False)

    def _started_reply(self, admitted: _Admitted) -> pb.RunTaskReply:
        """The reply once the attempt's process is started (or _START_WAIT has passed)."""
        started = admitted.attempt.started
        if admitted.duplicate:
            return self._accepted(started.result(), REASON_DUPLICATE)
        started_at = started.result() if started.done() else time.time()
        request = admitted.request
        if request.scheduled_for > 0:
            self._metrics.start_lateness.observe(max(0.0, started_at - request.scheduled_for))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "attempt started: %s",
                describe(admitted.attempt.spec),
                extra=ctx(
                    run_id=request.run_id,
                    attempt=request.attempt,
                    epoch=request.epoch,
                    job_id=request.job_id,
                ),
            )
        return self._accepted(started_at)

    async def CancelTask(  # noqa: N802 - gRPC method name
        self, request: pb.CancelTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelTaskReply:
        log_ctx = ctx(run_id=request.run_id, attempt=request.attempt, epoch=request.epoch)
        if not await self.observe_epoch(request.epoch):
            log.warning("CancelTask refused: stale epoch", extra=log_ctx)
            return pb.CancelTaskReply(found=False)
        attempt = self._attempts.get((request.run_id, request.attempt))
        if attempt is None:
            return pb.CancelTaskReply(found=False)
        if attempt.token.cancel("cancelled by controller"):
            log.info("cancelling attempt on controller request", extra=log_ctx)
        return pb.CancelTaskReply(found=True)

    # --- internals -------------------------------------------------------------------------

    def _refuse(self, reason: str) -> pb.RunTaskReply:
        self._metrics.tasks_rejected.labels(reason=reason).inc()
        return pb.RunTaskReply(accepted=False, reason=reason, highest_epoch=self._highest_epoch)

    def _accepted(self, started_at: float, reason: str = "") -> pb.RunTaskReply:
        return pb.RunTaskReply(
            accepted=True,
            reason=reason,
            started_at=started_at,
            highest_epoch=self._highest_epoch,
        )

    def _finished_started_at(self, key: AttemptKey) -> float | None:
        if key in self._finished:
            return self._finished[key]
        spooled = self._spool.get(*key)
        return spooled.started_at if spooled is not None else None

    async def _run_attempt(self, attempt: _Attempt) -> None:
        spec = attempt.spec
        log_ctx = ctx(run_id=spec.run_id, attempt=spec.attempt, epoch=attempt.epoch)

        def started(at: float, process: StartedProcess | None = None) -> None:
            if attempt.started.done() or attempt.marked is not None:
                return
            if process is None or self._mark_writes is None:
                attempt.started.set_result(at)
                return
            # Without the start stamp a restarted worker could not tell our group from a
            # later process that got the same pid.
            low, high = self._start_ticks.of(process)
            mark = Mark(spec.run_id, spec.attempt, process.pid, low, at, high)
            attempt.marked = self._mark_writes.submit(mark)
            attempt.marked.add_done_callback(functools.partial(_mark_written, attempt, at, log_ctx))

        try:
            if isinstance(spec, HttpTaskSpec):
                result = await execute_http(spec, attempt.token, on_started=started)
            else:
                result = await execute(
                    spec, attempt.token, on_started=started, kill_grace=self._kill_grace
                )
        except asyncio.CancelledError:
            # Teardown without a drain: the group got SIGKILL (or the request's connection was
            # closed); no result, the lease expires.
            started(time.time())
            self._forget(attempt)
            if attempt.marked is not None and self._mark_writes is not None:
                # Queued behind the mark itself; nobody waits for it at teardown.
                self._mark_writes.submit(attempt.key).add_done_callback(_ignore_outcome)
            raise
        except Exception as exc:  # a bug here must still end the attempt with a result
            log.exception("executor failed", extra=log_ctx)
            now = time.time()
            result = TaskResult(TaskState.FAILED, None, "", False, f"worker error: {exc}", now, now)
        started(result.started_at)
        if attempt.marked is not None and not attempt.marked.done():
            # Its "ended" must not reach the journal before the mark itself.
            await asyncio.wait({attempt.marked})

        report = report_from_result(self._worker_id, spec, result)
        await self._spool_until_stored(_Finished(report, attempt.marked is not None), log_ctx)
        self._finished[attempt.key] = result.started_at
        while len(self._finished) > _FINISHED_MEMORY:
            self._finished.popitem(last=False)
        self._forget(attempt)
        self._metrics.tasks_finished.labels(state=str(result.state)).inc()
        if log.isEnabledFor(logging.DEBUG):  # per attempt: off the hot path by default
            log.debug(
                "attempt finished: %s%s",
                result.state,
                f" ({result.error})" if result.error else "",
                extra=ctx(
                    run_id=spec.run_id,
                    attempt=spec.attempt,
                    epoch=attempt.epoch,
                    exit_code=result.exit_code,
                    seconds=round(result.finished_at - result.started_at, 3),
                ),
            )
        self._on_result()

    async def _spool_until_stored(self, finished: _Finished, log_ctx: dict) -> None:
        """A result that cannot be written (disk full) is retried, never dropped."""
        delay = 0.1
        while True:
            try:
                await self._result_writes.submit(finished)
                return
            except OSError:
                log.exception("cannot write result to spool; retrying", extra=log_ctx)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _SPOOL_RETRY_MAX)

    def _forget(self, attempt: _Attempt) -> None:
        if self._attempts.get(attempt.key) is attempt:
            del self._attempts[attempt.key]
            if not attempt.superseded:
                self._busy -= 1
            siblings = self._by_run[attempt.spec.run_id]
            siblings.remove(attempt)
            if not siblings:
                del self._by_run[attempt.spec.run_id]
        self._metrics.running.set(len(self._attempts))
        if not self._attempts:
            self._idle.set()


@dataclass(frozen=True)
class _Admitted:
    """A RunTask to be answered once the attempt's process is started (and marked)."""

    request: pb.RunTaskRequest
    attempt: _Attempt
    duplicate: bool
    """The attempt was already running: the reply says so, and gives its start time."""


@dataclass(frozen=True)
class _Finished:
    """What a finished attempt hands to the results' group commit."""

    report: pb.ReportResultRequest
    marked: bool
    """The attempt has a running mark to drop once the result is stored."""


def _store_results(spool: Spool, marks: RunningMarks | None, batch: Sequence[_Finished]) -> None:
    """Spool the results durably, then drop their attempts' marks: one thread hand-off.

    A crash between the two leaves marks of attempts whose results are spooled, which a
    restarted worker recognises (it does not report them again). A mark that cannot be
    dropped is no reason to retry the results: at worst a restart reports a duplicate.
    """
    spool.put_many([finished.report for finished in batch])
    ended = [(f.report.run_id, f.report.attempt) for f in batch if f.marked]
    if marks is not None and ended:
        with contextlib.suppress(OSError):
            marks.update([], ended)


def _write_marks(marks: RunningMarks, changes: Sequence[Mark | AttemptKey]) -> None:
    """One journal write for the attempts that started (a Mark) or ended (a key) meanwhile.

    Started before ended is safe: an attempt's end is queued only after its start."""
    marks.update(
        [change for change in changes if isinstance(change, Mark)],
        [change for change in changes if not isinstance(change, Mark)],
    )


def _mark_written(
    attempt: _Attempt, started_at: float, log_ctx: dict, written: asyncio.Future[None]
) -> None:
    """The attempt counts as started now; a mark that could not be written is logged, and
    the attempt runs on (refusing it would not stop a process already running)."""
    if not written.cancelled() and (error := written.exception()) is not None:
        log.error(
            "cannot record the running attempt's process group", exc_info=error, extra=log_ctx
        )
    if not attempt.started.done():
        attempt.started.set_result(started_at)


def _ignore_outcome(future: asyncio.Future[None]) -> None:
    """Retrieve the outcome of a write nobody waits for, so asyncio does not log it."""
    if not future.cancelled():
        future.exception()
