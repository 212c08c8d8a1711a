"""Helpers for the worker tests: a stand-in controller, polling with deadlines, settings, and
two ways to run the worker: the WorkerService alone behind gRPC, or the whole run_worker.

``FakeController`` is a real grpc.aio server implementing ControllerService that only records
what it receives, so worker tests need neither PostgreSQL nor the real controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from common.settings import Settings
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc
from worker.main import run_worker
from worker.metrics import WorkerMetrics
from worker.orphans import RunningMarks
from worker.service import WorkerService
from worker.spool import Spool


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
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
        return True
    return stat[stat.rfind(b")") + 2 :].split()[0] in (b"Z", b"X")


class FakeController(pb_grpc.ControllerServiceServicer):
    """Records heartbeats and results; ``acknowledge`` and ``epoch`` steer its replies.

    Results arrive by ReportResults (``batches`` keeps each call's size) or, from the
    one-at-a-time fallback, by ReportResult; ``reports`` has them all in arrival order.
    """

    def __init__(self) -> None:
        self.heartbeats: list[pb.HeartbeatRequest] = []
        self.reports: list[pb.ReportResultRequest] = []
        self.batches: list[int] = []
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

    async def ReportResults(self, request, context):  # noqa: N802
        self.reports.extend(request.results)
        self.batches.append(len(request.results))
        reply = pb.ReportResultReply(acknowledged=self.acknowledge, detail="recorded")
        return pb.ReportResultsReply(replies=[reply] * len(request.results))

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


def http_request(
    run_id: int,
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str = "",
    expected_status: int = 0,
    attempt: int = 1,
    epoch: int = 1,
    **fields: Any,
) -> pb.RunTaskRequest:
    """A RunTask of kind http."""
    spec = pb.HttpRequestSpec(
        method=method, url=url, headers=headers or {}, body=body, expected_status=expected_status
    )
    return pb.RunTaskRequest(
        run_id=run_id, attempt=attempt, epoch=epoch, kind="http", http=spec, **fields
    )


class Harness:
    """A WorkerService behind a real grpc.aio server, and a client stub for it; with
    ``marks``, it keeps running marks as run_worker does."""

    def __init__(self, tmp_path, *, marks: bool = False, **overrides) -> None:
        self.settings = worker_settings(tmp_path, ("127.0.0.1:1",), **overrides)
        self.keep_marks = marks
        self.results_ready = 0

    async def start(self) -> Harness:
        self.spool = Spool(self.settings.data_dir, self.settings.effective_worker_id)
        self.marks = RunningMarks(self.spool) if self.keep_marks else None
        self.metrics = WorkerMetrics()
        self.service = WorkerService(
            self.settings,
            self.spool,
            self.metrics,
            on_result=self._woken,
            marks=self.marks,
            kill_grace=0.5,
        )
        self.server = grpc.aio.server()
        pb_grpc.add_WorkerServiceServicer_to_server(self.service, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.WorkerServiceStub(self.channel)
        return self

    def _woken(self) -> None:
        self.results_ready += 1

    async def stop(self) -> None:
        self.service.cancel_all("test over")
        await self.service.wait_idle(5.0)
        await self.channel.close()
        await self.server.stop(None)
        if self.marks is not None:
            self.marks.close()
        self.spool.close()

    async def result(self, run_id: int, attempt: int = 1) -> pb.ReportResultRequest:
        await eventually(
            lambda: self.spool.contains(run_id, attempt), 10.0, f"result of {run_id}/{attempt}"
        )
        found = self.spool.get(run_id, attempt)
        assert found is not None
        return found


class RunningWorker:
    """run_worker in a task of this event loop, with its stop event and a stub to dial it."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run_worker(settings, self.stop))
        self.channel: grpc.aio.Channel | None = None
        self.stub: pb_grpc.WorkerServiceStub | None = None

    def connect(self, address: str) -> pb_grpc.WorkerServiceStub:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = pb_grpc.WorkerServiceStub(self.channel)
        return self.stub

    async def shutdown(self, timeout: float = 15.0) -> None:
        self.stop.set()
        try:
            await asyncio.wait_for(self.task, timeout)
        finally:
            if self.channel is not None:
                await self.channel.close()


@contextlib.asynccontextmanager
async def running_worker(settings):
    worker = RunningWorker(settings)
    try:
        yield worker
    finally:
        if not worker.task.done():
            await worker.shutdown()


async def registered(worker: RunningWorker, controller: FakeController) -> pb.HeartbeatRequest:
    """Wait for the first heartbeat, then dial the worker at the address it registered."""
    await eventually(lambda: controller.heartbeats or worker.task.done(), 5.0, "registration")
    if worker.task.done():
        worker.task.result()
    first = controller.heartbeats[0]
    worker.connect(first.address)
    return first
