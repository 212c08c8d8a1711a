"""ControllerService on every controller: worker heartbeats and results land in PostgreSQL.

Any controller accepts them (not only the leader), so a worker keeps its lease and delivers
its results through a failover. Results are idempotent on (run_id, attempt).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import grpc
from psycopg_pool import AsyncConnectionPool

from common.logging import ctx
from common.repo import leadership
from common.repo import runs as runs_repo
from common.repo import workers as workers_repo
from controller.metrics import ControllerMetrics
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

FINAL_STATES = {"succeeded", "failed", "timed_out", "cancelled"}


def _ts(value: float) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value > 0 else None


class ControllerService(pb_grpc.ControllerServiceServicer):
    def __init__(self, pool: AsyncConnectionPool, metrics: ControllerMetrics) -> None:
        self.pool = pool
        self.metrics = metrics

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
        if request.state not in FINAL_STATES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"state: {request.state!r} is not final"
            )
        result = runs_repo.AttemptResult(
            run_id=request.run_id,
            attempt=request.attempt,
            state=request.state,
            worker_id=request.worker_id or None,
            exit_code=request.exit_code if request.has_exit_code else None,
            output=request.output,
            output_truncated=request.output_truncated,
            error=request.error or None,
            started_at=_ts(request.started_at),
            finished_at=_ts(request.finished_at),
        )
        try:
            async with self.pool.connection() as conn:
                async with conn.transaction():
                    outcome = await runs_repo.finish_attempt(conn, result)
        except Exception as exc:  # noqa: BLE001 - kept in the worker's spool, retried
            log.warning("result not stored: %s", exc, extra=ctx(run_id=request.run_id))
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"database unavailable: {exc}")
            raise
        self.metrics.results.labels(outcome).inc()
        if outcome == "retrying":
            self.metrics.retries.labels("result").inc()
        log.info(
            "result stored",
            extra=ctx(
                run_id=request.run_id, attempt=request.attempt, state=request.state, outcome=outcome
            ),
        )
        return pb.ReportResultReply(acknowledged=True, detail=outcome)
