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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
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
    TaskResult,
    TaskSpec,
    TaskState,
    execute,
)
from worker.http_executor import HttpTaskSpec, execute_http
from worker.metrics import WorkerMetrics
from worker.orphans import RunningMarks
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
        self._kill_grace = kill_grace
        self._attempts: dict[AttemptKey, _Attempt] = {}
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

        Started concurrently: the replies wait only for each process to be spawned, and the
        spawns themselves are serialised by the event loop anyway.
        """
        replies = await asyncio.gather(*(self.RunTask(task, context) for task in request.tasks))
        return pb.RunTasksReply(replies=replies)

    async def RunTask(  # noqa: N802 - gRPC method name
        self, request: pb.RunTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunTaskReply:
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
            started_at = await asyncio.shield(running.started)
            return self._accepted(started_at, REASON_DUPLICATE)
        finished_at = self._finished_started_at(key)
        if finished_at is not None:
            return self._accepted(finished_at, REASON_DUPLICATE)
        if self.draining:
            return self._refuse(REASON_DRAINING)

        same_run = [a for a in self._attempts.values() if a.spec.run_id == request.run_id]
        if any(a.spec.attempt > request.attempt for a in same_run):
            log.info("RunTask refused: a newer attempt of this run is running", extra=log_ctx)
            return self._refuse(REASON_SUPERSEDED)
        # Older attempts of this run are about to be cancelled: they do not count.
        busy = sum(
            1
            for a in self._attempts.values()
            if not a.superseded and a.spec.run_id != request.run_id
        )
        if busy >= self._concurrency:
            return self._refuse(REASON_AT_CAPACITY)
        for older in same_run:
            older.superseded = True
            older.token.cancel(f"superseded by attempt {request.attempt}")
            log.info("cancelling attempt %d: superseded", older.spec.attempt, extra=log_ctx)

        attempt = _Attempt(spec=spec, epoch=request.epoch)
        self._attempts[key] = attempt
        self._idle.clear()
        self._metrics.running.set(len(self._attempts))
        self._metrics.tasks_started.inc()
        attempt.task = asyncio.create_task(
            self._run_attempt(attempt), name=f"attempt-{request.run_id}-{request.attempt}"
        )
        try:
            started_at = await within(asyncio.shield(attempt.started), _START_WAIT)
        except TimeoutError:
            started_at = time.time()
        if request.scheduled_for > 0:
            self._metrics.start_lateness.observe(max(0.0, started_at - request.scheduled_for))
        log.debug("attempt started: %s", describe(spec), extra=log_ctx)
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

        def started(at: float, pid: int | None = None) -> None:
            if pid is not None and self._marks is not None:
                try:
                    self._marks.add(spec.run_id, spec.attempt, pid, at)
                except OSError:
                    log.exception(
                        "cannot record the running attempt's process group", extra=log_ctx
                    )
            if not attempt.started.done():
                attempt.started.set_result(at)

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
            self._discard_mark(spec)
            raise
        except Exception as exc:  # a bug here must still end the attempt with a result
            log.exception("executor failed", extra=log_ctx)
            now = time.time()
            result = TaskResult(TaskState.FAILED, None, "", False, f"worker error: {exc}", now, now)
        started(result.started_at)

        report = report_from_result(self._worker_id, spec, result)
        await self._spool_until_stored(report, log_ctx)
        self._discard_mark(spec)
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

    async def _spool_until_stored(self, report: pb.ReportResultRequest, log_ctx: dict) -> None:
        """A result that cannot be written (disk full) is retried, never dropped."""
        delay = 0.1
        while True:
            try:
                await asyncio.to_thread(self._spool.put, report)
                return
            except OSError:
                log.exception("cannot write result to spool; retrying", extra=log_ctx)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _SPOOL_RETRY_MAX)

    def _discard_mark(self, spec: AttemptSpec) -> None:
        if self._marks is not None:
            with contextlib.suppress(OSError):
                self._marks.discard(spec.run_id, spec.attempt)

    def _forget(self, attempt: _Attempt) -> None:
        if self._attempts.get(attempt.key) is attempt:
            del self._attempts[attempt.key]
        self._metrics.running.set(len(self._attempts))
        if not self._attempts:
            self._idle.set()
