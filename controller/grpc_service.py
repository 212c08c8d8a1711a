"""ControllerService on every controller: worker heartbeats and results land in PostgreSQL.

Any controller accepts them (not only the leader), so a worker keeps its lease and delivers
its results through a failover. Results are idempotent on (run_id, attempt). Workers send
them in batches (ReportResults, one transaction per batch); ReportResult (one per call) stays
for workers that predate it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime

import grpc
from psycopg_pool import AsyncConnectionPool

from common.db import transact
from common.logging import ctx
from common.repo import leadership
from common.repo import runs as runs_repo
from common.repo import workers as workers_repo
from controller.metrics import ControllerMetrics
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

FINAL_STATES = {"succeeded", "failed", "timed_out", "cancelled"}
BATCH_LOG_INTERVAL = 60.0
"""Seconds between the INFO summaries of stored result batches (each batch is DEBUG)."""


def _ts(value: float) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value > 0 else None


class ControllerService(pb_grpc.ControllerServiceServicer):
    def __init__(self, pool: AsyncConnectionPool, metrics: ControllerMetrics) -> None:
        self.pool = pool
        self.metrics = metrics
        self._logged_at = time.monotonic()
        self._batches_since_log = 0
        self._results_since_log = 0

    async def Heartbeat(  # noqa: N802 - gRPC method name
        self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeartbeatReply:
        try:
            async with self.pool.connection() as conn:
                registered = await workers_repo.heartbeat(
                    conn,
                    worker_id=request.worker_id,
                    address=request.address,
                    labels=dict(request.labels),
                    capacity=request.capacity,
                    running=[(t.run_id, t.attempt) for t in request.running],
                    version=request.version,
                    draining=request.draining,
                    allowed_commands=(
                        list(request.allowed_commands) if request.restricted else None
                    ),
                )
                current = await leadership.current(conn)
        except Exception as exc:  # noqa: BLE001 - the worker retries on another controller
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"database unavailable: {exc}")
            raise  # unreachable: abort raises
        if registered:
            log.info(
                "worker registered", extra=ctx(worker=request.worker_id, address=request.address)
            )
        return pb.HeartbeatReply(ok=True, epoch=int(current["epoch"]) if current else 0)

    async def ReportResult(  # noqa: N802 - gRPC method name
        self, request: pb.ReportResultRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportResultReply:
        """One result in its own transaction: workers older than ReportResults use this."""
        if request.state not in FINAL_STATES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"state: {request.state!r} is not final"
            )
        try:
            result = _attempt_result(request)
            outcome = await transact(self.pool, lambda conn: runs_repo.finish_attempt(conn, result))
        except Exception as exc:  # noqa: BLE001 - kept in the worker's spool, retried
            log.warning("result not stored: %s", exc, extra=ctx(run_id=request.run_id))
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"database unavailable: {exc}")
            raise
        self._count(outcome)
        log.debug(
            "result stored",
            extra=ctx(
                run_id=request.run_id, attempt=request.attempt, state=request.state, outcome=outcome
            ),
        )
        return pb.ReportResultReply(acknowledged=True, detail=outcome)

    async def ReportResults(  # noqa: N802 - gRPC method name
        self, request: pb.ReportResultsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportResultsReply:
        """A worker's batch of results, stored in ONE transaction (one commit, one NOTIFY).

        All or nothing: if the transaction fails the call fails and nothing is acknowledged;
        the worker sends the batch again and the results already stored by then (by another
        controller, say) come back as duplicates. A result with a state no attempt ends in is
        refused on its own (acknowledged = false) instead of failing its whole batch.
        """
        replies: list[pb.ReportResultReply | None] = []
        valid: list[runs_repo.AttemptResult] = []
        for item in request.results:
            if item.state in FINAL_STATES:
                replies.append(None)
                valid.append(_attempt_result(item))
            else:
                replies.append(
                    pb.ReportResultReply(
                        acknowledged=False, detail=f"rejected: state {item.state!r} is not final"
                    )
                )
                self.metrics.results.labels("rejected").inc()
                log.warning(
                    "result rejected: state %r is not final",
                    item.state,
                    extra=ctx(run_id=item.run_id, attempt=item.attempt),
                )
        started = time.monotonic()
        try:
            outcomes = await self._store(valid)
        except Exception as exc:  # noqa: BLE001 - kept in the worker's spool, retried
            log.warning("results not stored: %s", exc, extra=ctx(results=len(request.results)))
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"database unavailable: {exc}")
            raise
        stored = iter(outcomes)
        for i, reply in enumerate(replies):
            if reply is None:
                outcome = next(stored)
                self._count(outcome)
                replies[i] = pb.ReportResultReply(acknowledged=True, detail=outcome)
        self._summarize(valid, outcomes, time.monotonic() - started)
        return pb.ReportResultsReply(replies=replies)

    async def _store(self, results: list[runs_repo.AttemptResult]) -> list[str]:
        if not results:
            return []
        return await transact(self.pool, lambda conn: runs_repo.finish_attempts(conn, results))

    def _count(self, outcome: str) -> None:
        self.metrics.results.labels(outcome).inc()
        if outcome == runs_repo.OUTCOME_RETRYING:
            self.metrics.retries.labels("result").inc()

    def _summarize(
        self, results: list[runs_repo.AttemptResult], outcomes: list[str], seconds: float
    ) -> None:
        """Per result and per batch at DEBUG; at INFO one line per BATCH_LOG_INTERVAL."""
        self._batches_since_log += 1
        self._results_since_log += len(results)
        if log.isEnabledFor(logging.DEBUG):
            for result, outcome in zip(results, outcomes, strict=True):
                log.debug(
                    "result stored",
                    extra=ctx(
                        run_id=result.run_id,
                        attempt=result.attempt,
                        state=result.state,
                        outcome=outcome,
                    ),
                )
            log.debug(
                "batch of %d result(s) stored in %.1f ms (%s)",
                len(results),
                seconds * 1000,
                ", ".join(f"{k}: {v}" for k, v in sorted(Counter(outcomes).items())),
            )
        now = time.monotonic()
        if now - self._logged_at >= BATCH_LOG_INTERVAL:
            log.info(
                "%d result(s) stored in %d batch(es) in the last %.0f s",
                self._results_since_log,
                self._batches_since_log,
                now - self._logged_at,
                extra=ctx(results=self._results_since_log, batches=self._batches_since_log),
            )
            self._logged_at = now
            self._batches_since_log = self._results_since_log = 0


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL: a job printing one would make its result (and, in
    a batch, its neighbours) impossible to store, and the worker would resend it forever."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _attempt_result(request: pb.ReportResultRequest) -> runs_repo.AttemptResult:
    return runs_repo.AttemptResult(
        run_id=request.run_id,
        attempt=request.attempt,
        state=request.state,
        worker_id=_text(request.worker_id) or None,
        exit_code=request.exit_code if request.has_exit_code else None,
        output=_text(request.output),
        output_truncated=request.output_truncated,
        error=_text(request.error) or None,
        started_at=_ts(request.started_at),
        finished_at=_ts(request.finished_at),
    )
