"""Delivers spooled results to a controller until one acknowledges each of them.

The spool is the queue: the reporter keeps no result only in memory, so whatever happens to the
worker or the controllers, an unacknowledged result is still on disk and is sent again later.
Results go out in batches (ReportResults, up to ``BATCH_MAX_RESULTS`` oldest first), which a
controller stores in one PostgreSQL transaction: the whole batch is acknowledged or none of it.
Storing is idempotent on (run_id, attempt) on the controller side, which makes "send again when
unsure" safe (e.g. the acknowledgement arrived but the worker crashed before removing the
files, or the link broke after the controller committed).

A controller older than ReportResults answers UNIMPLEMENTED; the reporter then falls back to
one ReportResult per result (rolling upgrades) and tries batches again a minute later.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator, Sequence

import grpc

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
"""Per call, batch or single; a batch is one transaction of a few ms on the controller."""
MIN_BACKOFF = 0.2
MAX_BACKOFF = 2.0
BATCH_MAX_RESULTS = 256
BATCH_MAX_BYTES = 2 * 1024 * 1024
"""A batch stays well under gRPC's default 4 MiB message limit; a single result larger than
this (the worker caps output at 1 MiB, up to 3 MiB once undecodable bytes are replaced) still
goes out, alone in its batch, as it did with ReportResult."""
SINGLE_RESULT_SECONDS = 60.0
"""After a controller answered UNIMPLEMENTED to ReportResults, how long to send one result per
call before trying a batch again (the controller may have been upgraded meanwhile)."""

Batch = Sequence[pb.ReportResultRequest]


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
        max_batch: int = BATCH_MAX_RESULTS,
        max_batch_bytes: int = BATCH_MAX_BYTES,
    ) -> None:
        self._spool = spool
        self._controllers = controllers
        self._metrics = metrics
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._failing = False
        self._single_until = 0.0
        self.delivered = 0
        self.batches = 0

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
        """Oldest first, batch by batch; stop at a batch no controller took any of.

        True when every result was acknowledged; a result a controller refused on its own
        stays spooled and is retried after the backoff, without holding up the others.
        """
        complete = True
        left = len(pending)
        for batch in batches(pending, self._max_batch, self._max_batch_bytes):
            acknowledged = await self._deliver(batch)
            if acknowledged == 0:
                return False
            complete = complete and acknowledged == len(batch)
            left -= acknowledged
            self._metrics.spool_pending.set(left)
        return complete

    async def _deliver(self, batch: Batch) -> int:
        """Send one batch; remove what was acknowledged from the spool; how many that was."""

        async def report(stub: pb_grpc.ControllerServiceStub) -> list[pb.ReportResultReply]:
            if time.monotonic() >= self._single_until:
                try:
                    reply = await stub.ReportResults(
                        pb.ReportResultsRequest(results=batch), timeout=self._timeout
                    )
                    return list(reply.replies)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                        raise
                    self._single_until = time.monotonic() + SINGLE_RESULT_SECONDS
                    log.warning(
                        "a controller does not know ReportResults (older version): "
                        "sending one result per call for %gs",
                        SINGLE_RESULT_SECONDS,
                    )
            return await self._one_by_one(stub, batch)

        first = batch[0]
        try:
            address, replies = await self._controllers.call(report, accept=_any_acknowledged)
        except NoControllerError as exc:
            self._metrics.report_errors.inc()
            # Warn once per outage, not on every retry of every batch.
            level = logging.DEBUG if self._failing else logging.WARNING
            log.log(
                level,
                "%d result(s) not delivered, kept in spool: %s",
                len(batch),
                exc,
                extra=ctx(results=len(batch), run_id=first.run_id, attempt=first.attempt),
            )
            self._failing = True
            return 0
        if self._failing:
            log.info("controllers reachable again; delivering spooled results")
            self._failing = False
        acknowledged = [
            (result.run_id, result.attempt)
            for result, reply in zip(batch, replies, strict=False)
            if reply.acknowledged
        ]
        # One directory fsync for the whole batch; a crash before it only means a resend.
        await asyncio.to_thread(self._spool.remove_many, acknowledged)
        self.delivered += len(acknowledged)
        self.batches += 1
        if log.isEnabledFor(logging.DEBUG):
            for result, reply in zip(batch, replies, strict=False):
                log.debug(
                    "result %s by %s%s",
                    "delivered" if reply.acknowledged else "refused",
                    address,
                    f" ({reply.detail})" if reply.detail else "",
                    extra=ctx(run_id=result.run_id, attempt=result.attempt, state=result.state),
                )
        if len(acknowledged) < len(batch):
            self._metrics.report_errors.inc()
            refused = [
                f"{r.run_id}/{r.attempt}: {reply.detail or 'not acknowledged'}"
                for r, reply in zip(batch, replies, strict=False)
                if not reply.acknowledged
            ]
            log.warning(
                "%d of %d result(s) not acknowledged by %s, kept in spool: %s",
                len(batch) - len(acknowledged),
                len(batch),
                address,
                "; ".join(refused[:5]) or "no reply for them",
            )
        return len(acknowledged)

    async def _one_by_one(
        self, stub: pb_grpc.ControllerServiceStub, batch: Batch
    ) -> list[pb.ReportResultReply]:
        """ReportResult per result, in order, for a controller without ReportResults.

        Stops at the first result not acknowledged; a call failing after some succeeded
        returns the replies so far, so what was stored is removed from the spool.
        """
        replies: list[pb.ReportResultReply] = []
        for result in batch:
            try:
                reply = await stub.ReportResult(result, timeout=self._timeout)
            except grpc.aio.AioRpcError:
                if not replies:
                    raise
                break
            replies.append(reply)
            if not reply.acknowledged:
                break
        return replies

    async def _sleep_or_wake(self, seconds: float) -> None:
        await wait_event(self._wake, seconds)


def batches(
    results: Sequence[pb.ReportResultRequest], max_results: int, max_bytes: int
) -> Iterator[list[pb.ReportResultRequest]]:
    """Consecutive slices of at most ``max_results`` results and ``max_bytes`` serialized
    (a result alone over ``max_bytes`` is a batch of its own)."""
    batch: list[pb.ReportResultRequest] = []
    size = 0
    for result in results:
        length = result.ByteSize()
        if batch and (len(batch) >= max_results or size + length > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(result)
        size += length
    if batch:
        yield batch


def _any_acknowledged(replies: list[pb.ReportResultReply]) -> bool:
    """A controller that took none of the batch counts as failing (the next one is tried)."""
    return any(reply.acknowledged for reply in replies)
