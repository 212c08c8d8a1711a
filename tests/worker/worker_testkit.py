"""Helpers for the worker tests: a stand-in controller, polling with deadlines, settings.

``FakeController`` is a real grpc.aio server implementing ControllerService that only records
what it receives, so worker tests need neither PostgreSQL nor the real controller.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from common.settings import Settings
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, what: str = ""
) -> None:
    """Poll ``condition`` until true; fail naming ``what`` when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.02)


def free_port() -> int:
    """A port that was free a moment ago (bind to 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody has reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(b")") + 2 :].split()[0] in (b"Z", b"X")


class FakeController(pb_grpc.ControllerServiceServicer):
    """Records heartbeats and results; ``acknowledge`` and ``epoch`` steer its replies."""

    def __init__(self) -> None:
        self.heartbeats: list[pb.HeartbeatRequest] = []
        self.reports: list[pb.ReportResultRequest] = []
        self.acknowledge = True
        self.epoch = 0
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def Heartbeat(self, request, context):  # noqa: N802
        self.heartbeats.append(request)
        return pb.HeartbeatReply(ok=True, epoch=self.epoch)

    async def ReportResult(self, request, context):  # noqa: N802
        self.reports.append(request)
        return pb.ReportResultReply(acknowledged=self.acknowledge, detail="recorded")

    def report_for(self, run_id: int, attempt: int = 1) -> pb.ReportResultRequest | None:
        for report in self.reports:
            if (report.run_id, report.attempt) == (run_id, attempt):
                return report
        return None

    async def start(self, port: int = 0) -> str:
        server = grpc.aio.server()
        pb_grpc.add_ControllerServiceServicer_to_server(self, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        self._server = server
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None


def worker_settings(tmp_path: Path, controllers: tuple[str, ...], **overrides: Any) -> Settings:
    """Fast settings for in-process workers: port 0 (picked at bind), short intervals."""
    values: dict[str, Any] = dict(
        data_dir=str(tmp_path / "data"),
        worker_id="w-test",
        worker_host="127.0.0.1",
        worker_port=0,
        worker_concurrency=2,
        worker_labels={"pool": "test"},
        controllers=controllers,
        heartbeat_interval=0.1,
        drain_timeout=5.0,
        output_limit_bytes=4096,
    )
    values.update(overrides)
    return Settings(**values)


def run_request(
    run_id: int, command: str, *, attempt: int = 1, epoch: int = 1, **fields: Any
) -> pb.RunTaskRequest:
    """A RunTask for a shell command (the common case in these tests)."""
    return pb.RunTaskRequest(
        run_id=run_id, attempt=attempt, epoch=epoch, command=command, use_shell=True, **fields
    )
