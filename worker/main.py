"""Worker process lifecycle: start everything, run until told to stop, drain, exit.

Shutdown order matters: first refuse new work and say so in a heartbeat (the leader stops
placing runs here), then let running attempts finish up to ``drain_timeout``, cancel the rest
(they are still reported, as ``cancelled``), try for a few seconds to deliver every spooled
result, and only then stop the gRPC server (CancelTask must work during the drain). Results
not delivered by then stay in the spool for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc

from common.collector import settle_collector
from common.exec_policy import PolicyError, check_patterns
from common.grpc_auth import GrpcSecurity
from common.logging import configure, ctx
from common.settings import Settings, SettingsError
from proto import chronoraft_pb2_grpc as pb_grpc
from worker.controllers import ControllerPool
from worker.executor import KILL_GRACE_SECONDS
from worker.heartbeat import Heartbeater
from worker.http_server import start_http
from worker.metrics import WorkerMetrics
from worker.orphans import RunningMarks, end_orphans
from worker.reporter import Reporter
from worker.service import WorkerService
from worker.spool import Spool

log = logging.getLogger(__name__)

FLUSH_TIMEOUT = 5.0
"""How long a stopping worker keeps trying to deliver spooled results."""

SERVER_OPTIONS = (
    # gRPC turns on SO_REUSEPORT by default, which lets a second worker bind the same port and
    # silently steal half the connections. A taken port must be a start error instead.
    ("grpc.so_reuseport", 0),
)


class WorkerStartupError(RuntimeError):
    """The worker cannot start (port taken, bad settings, spool owned by another process)."""


def _check(settings: Settings) -> None:
    if settings.worker_concurrency < 1:
        raise WorkerStartupError("CHRONORAFT_WORKER_CONCURRENCY must be at least 1")
    if not settings.controllers:
        raise WorkerStartupError("CHRONORAFT_CONTROLLERS lists no controller address")
    if settings.heartbeat_interval <= 0:
        raise WorkerStartupError("CHRONORAFT_HEARTBEAT_INTERVAL must be positive")
    try:
        check_patterns(settings.worker_allowed_commands, "CHRONORAFT_WORKER_ALLOWED_COMMANDS")
    except PolicyError as exc:
        raise WorkerStartupError(str(exc)) from exc


def _bind(server: grpc.aio.Server, settings: Settings, security: GrpcSecurity) -> int:
    address = f"{settings.worker_host}:{settings.worker_port}"
    try:
        port = security.add_port(server, address)
    except RuntimeError as exc:
        raise WorkerStartupError(
            f"cannot listen for gRPC on {address}: port in use or address not available"
        ) from exc
    if port == 0:  # older grpc versions report a failed bind this way
        raise WorkerStartupError(f"cannot listen for gRPC on {address}")
    return port


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run a worker until ``stop`` is set, or until SIGTERM/SIGINT when ``stop`` is None.

    ``worker_port=0`` picks a free port; the advertised address and the default worker id then
    use the real port.
    """
    _check(settings)
    try:
        security = GrpcSecurity.from_settings(settings)
    except SettingsError as exc:
        raise WorkerStartupError(str(exc)) from exc
    if not security.secret:
        log.warning("INSECURE: no CHRONORAFT_GRPC_SECRET, anyone reaching gRPC can run tasks here")
    server = security.server(SERVER_OPTIONS)
    port = _bind(server, settings, security)
    if port != settings.worker_port:
        settings = settings.with_overrides(worker_port=port)
    worker_id = settings.effective_worker_id

    try:
        spool = Spool(settings.data_dir, worker_id)
    except (RuntimeError, OSError) as exc:
        await server.stop(None)
        raise WorkerStartupError(f"cannot open the result spool: {exc}") from exc
    marks = RunningMarks(spool)
    metrics = WorkerMetrics()
    controllers = ControllerPool(settings.controllers, security)
    reporter = Reporter(spool, controllers, metrics)
    service = WorkerService(settings, spool, metrics, on_result=reporter.wake, marks=marks)
    heartbeater = Heartbeater(settings, controllers, service, metrics)
    pb_grpc.add_WorkerServiceServicer_to_server(service, server)

    own_signals = stop is None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    http_runner = None
    loops: list[asyncio.Task[None]] = []
    try:
        orphans = await end_orphans(marks, spool, worker_id)
        if orphans:
            log.warning("found %d attempt(s) left by a previous run of this worker", orphans)
        if settings.worker_http_port > 0:
            try:
                http_runner = await start_http(settings, metrics)
            except OSError as exc:
                raise WorkerStartupError(str(exc)) from exc
        await server.start()
        if own_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        loops = [
            asyncio.create_task(reporter.run(), name="reporter"),
            asyncio.create_task(heartbeater.run(), name="heartbeat"),
        ]
        pending = spool.count()
        log.info(
            "worker started on %s",
            settings.worker_address,
            extra=ctx(
                worker_id=worker_id,
                capacity=settings.worker_concurrency,
                epoch=service.highest_epoch,
                spooled=pending,
            ),
        )
        await _wait_for_stop(stop, loops)
        await _drain(settings, service, reporter, heartbeater)
    finally:
        if own_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        for task in loops:
            task.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await service.abort()
        await server.stop(1.0)
        if http_runner is not None:
            await http_runner.cleanup()
        await controllers.close()
        marks.close()
        spool.close()
        log.info("worker stopped", extra=ctx(worker_id=worker_id, spooled=_safe_count(spool)))


async def _wait_for_stop(stop: asyncio.Event, loops: list[asyncio.Task[None]]) -> None:
    """Return when asked to stop; a background loop dying is a bug and is raised, not hidden."""
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({stopper, *loops}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    for task in done:
        if task is not stopper:
            task.result()  # raises what killed the loop
            raise RuntimeError(f"worker loop {task.get_name()} ended unexpectedly")


async def _drain(
    settings: Settings, service: WorkerService, reporter: Reporter, heartbeater: Heartbeater
) -> None:
    service.start_draining()
    heartbeater.poke()
    running = len(service.running())
    log.info("stopping: waiting for %d running attempt(s)", running, extra=ctx(running=running))
    if not await service.wait_idle(settings.drain_timeout):
        count = service.cancel_all("cancelled: worker shutting down")
        log.warning("drain timeout: cancelling %d attempt(s)", count, extra=ctx(cancelled=count))
        await service.wait_idle(KILL_GRACE_SECONDS + 5.0)
    reporter.wake()
    if not await reporter.wait_idle(FLUSH_TIMEOUT):
        log.warning("some results not delivered yet; they stay in the spool for the next start")
    # A last heartbeat with nothing running tells the controller the worker left cleanly.
    await heartbeater.beat(timeout=1.0)


def _safe_count(spool: Spool) -> int | str:
    try:
        return spool.count()
    except OSError:
        return "?"


def main(settings: Settings) -> int:
    """Entry point of ``chronoraft worker``: 0 after a clean stop, 2 if it cannot start."""
    configure(settings.log_level, settings.log_format, node=settings.effective_worker_id)
    settle_collector()  # once everything is imported (common/collector.py)
    try:
        asyncio.run(run_worker(settings))
    except WorkerStartupError as exc:
        log.error("worker cannot start: %s", exc)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 130
    return 0
