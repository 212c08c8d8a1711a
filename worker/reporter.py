"""Delivers spooled results to a controller until one acknowledges each of them.

The spool is the queue: the reporter keeps no result only in memory, so whatever happens to the
worker or the controllers, an unacknowledged result is still on disk and is sent again later.
ReportResult is idempotent on (run_id, attempt) on the controller side, which makes "send again
when unsure" safe (e.g. the acknowledgement arrived but the worker crashed before removing the
file).
"""

from __future__ import annotations

import asyncio
import logging
import random

from common.aio import wait_event
from common.backoff import retry_delay
from common.logging import ctx
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc
from worker.controllers import ControllerPool, NoControllerError
from worker.metrics import WorkerMetrics
from worker.spool import Spool

log = logging.getLogger(__name__)

REPORT_TIMEOUT = 3.0
MIN_BACKOFF = 0.2
MAX_BACKOFF = 2.0


class Reporter:
    """One loop: read the spool, deliver oldest first, sleep until woken or the backoff ends."""

    def __init__(
        self,
        spool: Spool,
        controllers: ControllerPool,
        metrics: WorkerMetrics,
        *,
        timeout: float = REPORT_TIMEOUT,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self._spool = spool
        self._controllers = controllers
        self._metrics = metrics
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._failing = False
        self.delivered = 0

    def wake(self) -> None:
        """A new result is in the spool: try now instead of at the end of a backoff."""
        self._idle.clear()
        self._wake.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until the spool was seen empty (used when draining); False on timeout."""
        return await wait_event(self._idle, timeout)

    async def run(self) -> None:
        """Deliver forever; cancel the task to stop (a result in flight stays spooled)."""
        failures = 0
        while True:
            self._wake.clear()
            pending = await asyncio.to_thread(self._spool.pending)
            self._metrics.spool_pending.set(len(pending))
            if not pending:
                if not self._wake.is_set():
                    self._idle.set()
                await self._wake.wait()
                continue
            self._idle.clear()
            if await self._deliver_all(pending):
                failures = 0
                continue
            failures += 1
            # Jittered, so a fleet of workers does not hit a returning controller in lockstep.
            delay = retry_delay(failures, MIN_BACKOFF, self._max_backoff, random.random())
            await self._sleep_or_wake(delay)

    async def _deliver_all(self, pending: list[pb.ReportResultRequest]) -> bool:
        """Oldest first, stop at the first failure (the controllers are down for all of them)."""
        for result in pending:
            if not await self._deliver(result):
                return False
        return True

    async def _deliver(self, result: pb.ReportResultRequest) -> bool:
        log_ctx = ctx(run_id=result.run_id, attempt=result.attempt, state=result.state)

        async def report(stub: pb_grpc.ControllerServiceStub) -> pb.ReportResultReply:
            return await stub.ReportResult(result, timeout=self._timeout)

        try:
            address, reply = await self._controllers.call(report, accept=_acknowledged)
        except NoControllerError as exc:
            self._metrics.report_errors.inc()
            # Warn once per outage, not on every retry of every result.
            level = logging.DEBUG if self._failing else logging.WARNING
            log.log(level, "result not delivered, kept in spool: %s", exc, extra=log_ctx)
            self._failing = True
            return False
        if self._failing:
            log.info("controllers reachable again; delivering spooled results", extra=log_ctx)
            self._failing = False
        await asyncio.to_thread(self._spool.remove, result.run_id, result.attempt)
        self.delivered += 1
        log.info(
            "result delivered to %s%s",
            address,
            f" ({reply.detail})" if reply.detail else "",
            extra=log_ctx,
        )
        return True

    async def _sleep_or_wake(self, seconds: float) -> None:
        await wait_event(self._wake, seconds)


def _acknowledged(reply: pb.ReportResultReply) -> bool:
    return reply.acknowledged
