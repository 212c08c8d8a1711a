"""Periodic Heartbeat to a controller: registers the worker and keeps its lease alive.

The heartbeat carries what the leader needs to place work (address, labels, capacity, what is
running, the command allowlist so no run is placed here only to be refused ``not_allowed``)
and ``draining`` so it stops sending work to a worker that is shutting down. The reply's epoch
(the one in PostgreSQL) raises this worker's fence, so a deposed leader is refused even
before the new leader's first RunTask arrives here.
"""

from __future__ import annotations

import asyncio
import logging

from common.aio import wait_event
from common.logging import ctx
from common.settings import Settings
from common.version import version
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc
from worker.controllers import ControllerPool, NoControllerError
from worker.metrics import WorkerMetrics
from worker.service import WorkerService

log = logging.getLogger(__name__)


class Heartbeater:
    """Sends a heartbeat every ``heartbeat_interval`` seconds, or at once when poked."""

    def __init__(
        self,
        settings: Settings,
        controllers: ControllerPool,
        service: WorkerService,
        metrics: WorkerMetrics,
    ) -> None:
        self._settings = settings
        self._worker_id = settings.effective_worker_id
        self._controllers = controllers
        self._service = service
        self._metrics = metrics
        self._interval = max(0.05, settings.heartbeat_interval)
        # A heartbeat slower than the interval is as good as lost; do not let calls pile up.
        self._timeout = min(3.0, max(0.5, self._interval * 2))
        self._poke = asyncio.Event()
        self._version = version()
        self.registered = False
        self.failing = False

    def poke(self) -> None:
        """Send the next heartbeat now (e.g. to announce draining without delay)."""
        self._poke.set()

    def request(self) -> pb.HeartbeatRequest:
        allowed = self._service.allowed_commands
        return pb.HeartbeatRequest(
            worker_id=self._worker_id,
            address=self._settings.worker_address,
            labels=dict(self._settings.worker_labels),
            capacity=self._service.capacity,
            running=[pb.RunningTask(run_id=r, attempt=a) for r, a in self._service.running()],
            version=self._version,
            draining=self._service.draining,
            restricted=bool(allowed),
            allowed_commands=list(allowed),
        )

    async def beat(self, timeout: float | None = None) -> bool:
        """One heartbeat to the first controller that answers; False if none did."""
        request = self.request()
        deadline = self._timeout if timeout is None else timeout

        async def send(stub: pb_grpc.ControllerServiceStub) -> pb.HeartbeatReply:
            return await stub.Heartbeat(request, timeout=deadline)

        try:
            address, reply = await self._controllers.call(send)
        except NoControllerError as exc:
            self._metrics.heartbeat_errors.inc()
            if not self.failing:
                log.warning("heartbeat failed: %s", exc, extra=ctx(worker_id=self._worker_id))
            self.failing = True
            return False
        if not self.registered or self.failing:
            log.info(
                "registered with controller %s as %s (%s)",
                address,
                self._worker_id,
                self._settings.worker_address,
                extra=ctx(epoch=reply.epoch),
            )
        self.registered = True
        self.failing = False
        if reply.epoch > 0:
            await self._service.observe_epoch(reply.epoch)
        return True

    async def run(self) -> None:
        """Beat forever on a fixed cadence; cancel the task to stop."""
        loop = asyncio.get_running_loop()
        while True:
            self._poke.clear()
            started = loop.time()
            await self.beat()
            remaining = self._interval - (loop.time() - started)
            if remaining > 0:
                await wait_event(self._poke, remaining)
