"""One controller process: migrations, pool, Raft, ControllerService, REST API, leadership."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

import grpc
import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from common import db
from common.collector import settle_collector
from common.grpc_auth import GrpcSecurity
from common.logging import configure, ctx
from common.settings import Settings, SettingsError
from common.version import version
from controller.api.app import create_app
from controller.grpc_service import ControllerService
from controller.leadership import LeadershipManager
from controller.metrics import ControllerMetrics
from controller.raft import RaftNode
from proto import chronoraft_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class ControllerStartupError(Exception):
    """The controller cannot serve (its API or gRPC port taken...): it exits 2 saying why."""


class NodeView:
    """The API's read-only window onto this node's Raft and leadership state."""

    def __init__(self, settings: Settings, raft: RaftNode, manager: LeadershipManager) -> None:
        self.settings = settings
        self.raft = raft
        self.manager = manager
        self.started_at = time.time()

    def raft_known(self) -> bool:
        snap = self.manager.state.snapshot or self.raft.snapshot()
        return snap.role == "leader" or snap.leader is not None

    def node_info(self) -> dict[str, Any]:
        s = self.settings
        snap = self.manager.state.snapshot or self.raft.snapshot()
        leading = self.manager.state.leading_epoch
        return {
            "node": {
                "id": s.node_id,
                "role": snap.role,
                "pid": os.getpid(),
                "version": version(),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
                "http": f"http://{s.http_host}:{s.http_port}",
                "grpc": f"{s.grpc_host}:{s.grpc_port}",
                "raft": s.raft_self,
                "leading_epoch": leading,
            },
            "raft": {
                "role": snap.role,
                "term": snap.term,
                "leader": snap.leader,
                "has_quorum": snap.has_quorum,
            },
            "peers": [
                {"raft": address, "connected": connected}
                for address, connected in sorted(snap.peers.items())
            ],
        }


def migrate_with_retry(url: str, deadline_seconds: float = 120.0) -> None:
    """Apply migrations, waiting for PostgreSQL to come up (controllers may start first)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            db.migrate(url)
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("waiting for PostgreSQL: %s", str(exc).strip()[:200])
            time.sleep(1.0)


async def run_controller(settings: Settings, stop: asyncio.Event | None = None) -> None:
    if not settings.database_url:
        raise SystemExit("CHRONORAFT_DATABASE_URL (or --database-url) is required")
    security = GrpcSecurity.from_settings(settings)  # unreadable TLS files: stop before anything
    if not security.secret:
        log.warning("INSECURE: no CHRONORAFT_GRPC_SECRET, any process can heartbeat and report")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    await asyncio.to_thread(migrate_with_retry, settings.database_url)
    metrics = ControllerMetrics()
    pool = db.make_pool(settings.database_url)
    await pool.open(wait=False)
    raft = RaftNode(settings)
    manager = LeadershipManager(settings, raft, pool, metrics)
    server: grpc.aio.Server | None = None
    runner: web.AppRunner | None = None
    try:  # a bad token file, allowlist or a port taken: refuse to start, leaving nothing behind
        app = create_app(settings, pool, metrics, NodeView(settings, raft, manager))
        server = security.server()
        pb_grpc.add_ControllerServiceServicer_to_server(ControllerService(pool, metrics), server)
        grpc_address = f"{settings.grpc_host}:{settings.grpc_port}"
        try:
            security.add_port(server, grpc_address)
        except RuntimeError as exc:  # grpcio's "Failed to bind to address ..."
            raise ControllerStartupError(f"cannot serve gRPC on {grpc_address}: {exc}") from exc
        await server.start()
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        try:
            await site.start()
        except OSError as exc:
            raise ControllerStartupError(
                f"cannot serve the API on {settings.http_host}:{settings.http_port}: "
                f"{exc.strerror or exc}"
            ) from exc
    except BaseException:
        await _close_parts(raft, server, runner, pool)
        raise
    manager.start()
    log.info(
        "controller ready",
        extra=ctx(
            http=f"{settings.http_host}:{settings.http_port}",
            raft=settings.raft_self,
            grpc=f"{settings.grpc_host}:{settings.grpc_port}",
            pid=os.getpid(),
        ),
    )
    try:
        await stop.wait()
    finally:
        await _shutdown(manager, raft, server, runner, pool)


async def _close_parts(
    raft: RaftNode,
    server: grpc.aio.Server | None,
    runner: web.AppRunner | None,
    pool: AsyncConnectionPool,
    grace: float | None = None,
) -> None:
    """Raft, then the servers workers and clients talk to, then the pool: what a stop and a
    failed start both close (``server``/``runner`` None when the start failed before them).
    Left open after a failed start, the pool's connecting tasks and the servers kept
    ``asyncio.run`` waiting for ever: a controller whose port was taken hung without a word
    instead of exiting."""
    raft.close()
    if server is not None:
        await server.stop(grace)
    if runner is not None:
        await runner.cleanup()
    await pool.close()


async def _shutdown(
    manager: LeadershipManager,
    raft: RaftNode,
    server: grpc.aio.Server,
    runner: web.AppRunner,
    pool: AsyncConnectionPool,
) -> None:
    """Stop in the order that keeps the cluster whole: leader loop, Raft (handing leadership
    to a follower first), then the servers workers and clients talk to, then the pool."""
    started = time.monotonic()
    leading = manager.state.leading_epoch
    log.info("controller stopping", extra=ctx(leading_epoch=leading))
    try:
        await manager.shutdown()
    except Exception:  # noqa: BLE001 - the rest must still stop; followers elect by timeout
        log.exception("graceful leadership handover failed")
    await _close_parts(raft, server, runner, pool, grace=1.0)
    log.info("controller stopped", extra=ctx(ms=round((time.monotonic() - started) * 1000)))


def main(settings: Settings) -> int:
    configure(settings.log_level, settings.log_format, node=settings.node_id)
    settle_collector()  # once everything is imported (common/collector.py)
    try:
        asyncio.run(run_controller(settings))
    except KeyboardInterrupt:
        pass
    except (SettingsError, ControllerStartupError) as exc:
        log.error("controller cannot start: %s", exc)
        return 2
    return 0
