"""The leader hands a worker a batch's runs in one RunTasks call, and falls back to one
RunTask per run for a worker that does not know RunTasks (an older one mid-upgrade).

The worker here is a stand-in gRPC server in the test process (the real worker's RunTasks
is covered in tests/worker): it records what it was asked and reports each run succeeded
through the controller's ReportResult, so the runs finish as with a real worker.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest

from common.grpc_auth import GrpcSecurity
from common.pgserver import free_port
from controller.local_cluster import LocalCluster
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc
from tests.helpers import api, unique, wait_until

pytestmark = pytest.mark.cluster
RUNS = 5


class _OldWorker(pb_grpc.WorkerServiceServicer):
    """Knows RunTask only: the generated base class answers RunTasks with UNIMPLEMENTED."""

    def __init__(self, report: Any) -> None:
        self.report = report
        self.calls: list[tuple[str, list[int]]] = []

    async def RunTask(self, request: pb.RunTaskRequest, context: Any) -> pb.RunTaskReply:  # noqa: N802
        self.calls.append(("RunTask", [request.run_id]))
        return await self._take(request)

    async def _take(self, request: pb.RunTaskRequest) -> pb.RunTaskReply:
        now = time.time()
        asyncio.get_running_loop().create_task(self.report(request, now))
        return pb.RunTaskReply(accepted=True, started_at=now)


class _NewWorker(_OldWorker):
    async def RunTasks(self, request: pb.RunTasksRequest, context: Any) -> pb.RunTasksReply:  # noqa: N802
        self.calls.append(("RunTasks", [t.run_id for t in request.tasks]))
        return pb.RunTasksReply(replies=[await self._take(t) for t in request.tasks])


class _StandIn:
    """A gRPC WorkerService on its own thread and loop that heartbeats to the controller."""

    def __init__(self, cluster: LocalCluster, batching: bool) -> None:
        self.cluster = cluster
        self.port = free_port()
        self.security = GrpcSecurity(secret=cluster.grpc_secret)
        make = _NewWorker if batching else _OldWorker
        self.servicer = make(self._report)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> _StandIn:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _serve(self) -> None:
        self.server = grpc.aio.server()
        pb_grpc.add_WorkerServiceServicer_to_server(self.servicer, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()
        self.channel = self.security.channel(f"127.0.0.1:{self.cluster.grpc_base}")
        self.controller = pb_grpc.ControllerServiceStub(self.channel)
        self.beats = self.loop.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            beat = pb.HeartbeatRequest(
                worker_id="stand-in", address=f"127.0.0.1:{self.port}", capacity=16
            )
            await self.controller.Heartbeat(beat, timeout=5)
            await asyncio.sleep(0.5)

    async def _report(self, request: pb.RunTaskRequest, started_at: float) -> None:
        result = pb.ReportResultRequest(
            worker_id="stand-in",
            run_id=request.run_id,
            attempt=request.attempt,
            state="succeeded",
            has_exit_code=True,
            exit_code=0,
            started_at=started_at,
            finished_at=time.time(),
        )
        await self.controller.ReportResult(result, timeout=5)

    async def _stop(self) -> None:
        self.beats.cancel()
        await self.server.stop(None)
        await self.channel.close()


@pytest.fixture
def cluster(make_cluster: Any) -> Iterator[LocalCluster]:
    yield make_cluster(controllers=1, workers=0)


def _runs_at_once(cluster: LocalCluster) -> list[int]:
    """RUNS pending runs committed together, so one dispatch batch picks them all up."""
    base = cluster.url("c1")
    status, job = api(
        "POST",
        base,
        "/api/v1/jobs",
        {"name": unique("batch"), "schedule": "0 3 * * *", "command": "true"},
        token=cluster.admin_token,
    )
    assert status == 201, job
    with psycopg.connect(cluster.database_url, autocommit=True) as conn:
        with conn.transaction():
            rows = conn.execute(
                "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries) "
                "SELECT %s, now() - make_interval(secs => g), 'manual', 'pending', 0 "
                "FROM generate_series(1, %s) g RETURNING id",
                (job["id"], RUNS),
            ).fetchall()
            conn.execute("NOTIFY chronoraft_runs, 'test'")
    return sorted(int(r[0]) for r in rows)


def _all_succeeded(cluster: LocalCluster, ids: list[int]) -> bool:
    with psycopg.connect(cluster.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE id = ANY(%s) AND state = 'succeeded'", (ids,)
        ).fetchone()
    return row is not None and row[0] == len(ids)


@pytest.mark.parametrize("batching", [True, False], ids=["RunTasks", "RunTask-fallback"])
def test_a_batch_reaches_the_worker_in_one_call_or_one_per_run(
    cluster: LocalCluster, batching: bool
) -> None:
    with _StandIn(cluster, batching) as worker:
        wait_until(
            "the stand-in worker to register",
            lambda: any(
                w["id"] == "stand-in" and w["alive"]
                for w in (cluster.cluster_info("c1") or {}).get("workers", [])
            ),
            30,
        )
        ids = _runs_at_once(cluster)
        wait_until("every run to succeed", lambda: _all_succeeded(cluster, ids), 30)
        calls = list(worker.servicer.calls)
    asked = sorted(run_id for _, run_ids in calls for run_id in run_ids)
    assert asked == ids  # each run handed over exactly once
    if batching:
        assert [name for name, _ in calls] == ["RunTasks"], calls
    else:
        assert [name for name, _ in calls] == ["RunTask"] * RUNS, calls
