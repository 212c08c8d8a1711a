"""Worker results through the real ControllerService into PostgreSQL, over real gRPC.

The worker's reporter and spool talk to a ControllerService on a real pool; a TCP proxy
between them lets a test cut the link in the middle of a batch. Whatever the moment of the
cut, every result must end up stored exactly once and leave the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from psycopg.rows import dict_row

from common import db
from controller.grpc_service import ControllerService
from controller.metrics import ControllerMetrics
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc
from tests.integration.pg_locks import waiting_for_a_lock
from worker.controllers import ControllerPool
from worker.metrics import WorkerMetrics
from worker.reporter import Reporter
from worker.spool import Spool

WORKER = "w-test"
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Proxy:
    """A TCP forwarder whose open connections can all be cut at once (new ones still work)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self._links: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._links += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    def cut(self) -> None:
        self.cuts += 1
        for writer in self._links:
            writer.transport.abort()
        self._links.clear()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class LinkCutter(pb_grpc.ControllerServiceServicer):
    """The real service, with a hook that cuts the worker's link during the first batch.

    ``calls`` holds the outcomes of each batch whose transaction committed.
    """

    def __init__(self, real: ControllerService, proxy: Proxy, hook: str) -> None:
        self.real = real
        self.proxy = proxy
        self.hook = hook
        self.calls: list[list[str]] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def ReportResults(self, request, context):  # noqa: N802
        first = not self.entered.is_set()
        self.entered.set()
        if first and self.hook == "before_commit":
            await self.release.wait()  # the test holds a row lock and cuts meanwhile
        reply = await self.real.ReportResults(request, context)
        self.calls.append([r.detail for r in reply.replies])
        if first and self.hook == "after_commit":
            self.proxy.cut()  # stored, but the acknowledgement has nowhere to go
            await asyncio.sleep(0.2)
        return reply

    async def ReportResult(self, request, context):  # noqa: N802
        return await self.real.ReportResult(request, context)


@contextlib.asynccontextmanager
async def controller_service(database_url: str) -> AsyncIterator[tuple[ControllerService, Any]]:
    pool = db.make_pool(database_url, min_size=1, max_size=4)
    await pool.open()
    try:
        yield ControllerService(pool, ControllerMetrics()), pool
    finally:
        await pool.close()


async def _running_runs(url: str, count: int) -> list[int]:
    async with await psycopg.AsyncConnection.connect(
        url, row_factory=dict_row, autocommit=True
    ) as conn:
        cur = await conn.execute(
            "INSERT INTO jobs (name, schedule, command) VALUES ('reported', '0 3 * * *', 'true') "
            "RETURNING id"
        )
        job_id = (await cur.fetchone())["id"]
        ids = []
        for i in range(count):
            cur = await conn.execute(
                "INSERT INTO runs (job_id, scheduled_for, trigger, state, worker_id, epoch, "
                "dispatched_at, started_at) VALUES (%s, %s, 'schedule', 'running', %s, 1, %s, %s) "
                "RETURNING id",
                (job_id, T0 + timedelta(minutes=i), WORKER, T0, T0),
            )
            ids.append((await cur.fetchone())["id"])
        return ids


def _result(run_id: int, **fields: Any) -> pb.ReportResultRequest:
    values: dict[str, Any] = dict(
        worker_id=WORKER,
        run_id=run_id,
        attempt=1,
        state="succeeded",
        has_exit_code=True,
        exit_code=0,
        output=f"run {run_id}\n",
        started_at=T0.timestamp(),
        finished_at=T0.timestamp() + 1,
    )
    values.update(fields)
    return pb.ReportResultRequest(**values)


async def _stored(url: str, ids: list[int]) -> tuple[list[dict[str, Any]], int]:
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        cur = await conn.execute(
            "SELECT id, state, output FROM runs WHERE id = ANY(%s) ORDER BY id", (ids,)
        )
        runs = await cur.fetchall()
        cur = await conn.execute(
            "SELECT count(*) AS n FROM run_attempts WHERE run_id = ANY(%s)", (ids,)
        )
        return runs, (await cur.fetchone())["n"]


@pytest.mark.parametrize("hook", ["after_commit", "before_commit"])
async def test_a_link_cut_mid_batch_leads_to_a_resend_stored_exactly_once(
    database_url: str, tmp_path: Path, hook: str
) -> None:
    ids = await _running_runs(database_url, 30)
    spool = Spool(tmp_path, WORKER)
    spool.put_many([_result(run_id) for run_id in ids])
    async with controller_service(database_url) as (real, _pool):
        server = grpc.aio.server()
        port = server.add_insecure_port("127.0.0.1:0")
        proxy = Proxy(port)
        cutter = LinkCutter(real, proxy, hook)
        pb_grpc.add_ControllerServiceServicer_to_server(cutter, server)
        await server.start()
        controllers = ControllerPool([await proxy.start()])
        reporter = Reporter(spool, controllers, WorkerMetrics(), max_backoff=0.3)
        task = asyncio.create_task(reporter.run())
        blocker = None
        try:
            if hook == "before_commit":
                # Hold one run's row so the batch transaction is open and waiting when the
                # link dies; then let it go on.
                blocker = await psycopg.AsyncConnection.connect(database_url)
                await blocker.execute("BEGIN")
                await blocker.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (ids[7],))
                cutter.release.set()
                await asyncio.wait_for(cutter.entered.wait(), 10)
                await asyncio.sleep(0.3)  # the batch is blocked on the lock
                proxy.cut()
                await asyncio.sleep(0.3)
                await blocker.execute("COMMIT")
            deadline = asyncio.get_running_loop().time() + 15
            while spool.count() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert spool.count() == 0, "every result acknowledged in the end"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if blocker is not None:
                await blocker.close()
            await controllers.close()
            await server.stop(None)
            await proxy.stop()
            spool.close()
    assert proxy.cuts >= 1
    # Each result applied once, whichever call stored it. Cut after the commit: the resend
    # finds them all stored. Cut while the transaction waits: gRPC cancels the handler, the
    # transaction rolls back, and the resend stores them (were the handler to finish anyway,
    # the resend would see duplicates; the count below holds either way).
    recorded = sum(outcome == "recorded" for call in cutter.calls for outcome in call)
    assert recorded == len(ids), cutter.calls
    if hook == "after_commit":
        assert cutter.calls[:2] == [["recorded"] * 30, ["duplicate"] * 30]
    runs, attempts = await _stored(database_url, ids)
    assert [(r["state"], r["output"]) for r in runs] == [
        ("succeeded", f"run {run_id}\n") for run_id in ids
    ]
    assert attempts == len(ids)


async def test_a_batch_reply_answers_each_result_in_order(database_url: str) -> None:
    ids = await _running_runs(database_url, 3)
    async with controller_service(database_url) as (real, _pool):
        server = grpc.aio.server()
        pb_grpc.add_ControllerServiceServicer_to_server(real, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.ControllerServiceStub(channel)
        try:
            reply = await stub.ReportResults(
                pb.ReportResultsRequest(
                    results=[
                        _result(ids[0]),
                        _result(ids[1], state="running"),  # not a final state: refused alone
                        _result(ids[2], output="a\x00b"),  # PostgreSQL text cannot hold NUL
                        _result(ids[0]),  # resent within the batch
                    ]
                ),
                timeout=5,
            )
            assert [(r.acknowledged, r.detail) for r in reply.replies] == [
                (True, "recorded"),
                (False, "rejected: state 'running' is not final"),
                (True, "recorded"),
                (True, "duplicate"),
            ]
            empty = await stub.ReportResults(pb.ReportResultsRequest(), timeout=5)
            assert list(empty.replies) == []
            # Workers from before ReportResults still get their results stored.
            single = await stub.ReportResult(_result(ids[1]), timeout=5)
            assert (single.acknowledged, single.detail) == (True, "recorded")
        finally:
            await channel.close()
            await server.stop(None)
    runs, attempts = await _stored(database_url, ids)
    assert [r["output"] for r in runs] == [f"run {ids[0]}\n", f"run {ids[1]}\n", "a\ufffdb"]
    assert attempts == 3
    counted = {
        s.labels["outcome"]: s.value
        for metric in real.metrics.registry.collect()
        if metric.name == "chronoraft_results"
        for s in metric.samples
        if s.name == "chronoraft_results_total"
    }
    assert counted == {"recorded": 3.0, "duplicate": 1.0, "rejected": 1.0}


async def test_a_batch_rolled_back_by_a_deadlock_is_stored_again_at_once(
    database_url: str,
) -> None:
    """PostgreSQL picks the results transaction as a deadlock's victim; the controller runs
    it again instead of failing the call (the worker would wait out its backoff, and could
    lose the same race again)."""
    first, second = await _running_runs(database_url, 2)
    async with controller_service(database_url) as (real, _pool):
        other = await psycopg.AsyncConnection.connect(database_url)
        try:
            # Another transaction holds the second run and, later, wants the first. It
            # waits 10 s before looking for a deadlock, so the results transaction (which
            # looks after 1 s) finds it and is the one rolled back.
            await other.execute("SET deadlock_timeout = '10s'")
            await other.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (second,))
            storing = asyncio.create_task(
                real.ReportResults(
                    pb.ReportResultsRequest(results=[_result(first), _result(second)]), None
                )
            )
            await waiting_for_a_lock(database_url)  # holds the first, waits for the second
            await other.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (first,))
            await other.commit()
            reply = await asyncio.wait_for(storing, 15)
        finally:
            await other.close()
    assert [(r.acknowledged, r.detail) for r in reply.replies] == [(True, "recorded")] * 2
    runs, attempts = await _stored(database_url, [first, second])
    assert [r["state"] for r in runs] == ["succeeded", "succeeded"] and attempts == 2
