"""The reporter delivers the spool in batches, oldest first, and falls back to one result per
call for a controller that predates ReportResults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
from worker_testkit import FakeController, eventually

from proto import chronoraft_pb2 as pb
from worker.controllers import ControllerPool
from worker.metrics import WorkerMetrics
from worker.reporter import BATCH_MAX_RESULTS, Reporter, batches
from worker.spool import Spool


def result(run_id: int, attempt: int = 1, output: str = "ok\n") -> pb.ReportResultRequest:
    return pb.ReportResultRequest(
        worker_id="w-test", run_id=run_id, attempt=attempt, state="succeeded", output=output
    )


@contextlib.asynccontextmanager
async def reporting(spool: Spool, *addresses: str, **options: int) -> AsyncIterator[Reporter]:
    """A Reporter running against ``addresses`` until the block ends."""
    pool = ControllerPool(addresses)
    reporter = Reporter(spool, pool, WorkerMetrics(), max_backoff=0.2, **options)
    task = asyncio.create_task(reporter.run())
    try:
        yield reporter
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()


class OldController:
    """A controller from before ReportResults: the method is not registered at all, so gRPC
    itself answers UNIMPLEMENTED, as a not-yet-upgraded controller would."""

    def __init__(self) -> None:
        self.reports: list[pb.ReportResultRequest] = []
        self.server = grpc.aio.server()
        handlers = {
            "ReportResult": grpc.unary_unary_rpc_method_handler(
                self._report,
                request_deserializer=pb.ReportResultRequest.FromString,
                response_serializer=pb.ReportResultReply.SerializeToString,
            )
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("chronoraft.ControllerService", handlers),)
        )
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    async def _report(self, request: pb.ReportResultRequest, context) -> pb.ReportResultReply:
        self.reports.append(request)
        return pb.ReportResultReply(acknowledged=True, detail="recorded")


async def test_results_go_out_oldest_first_in_batches_of_at_most_256(tmp_path, controller):
    spool = Spool(tmp_path, "w-test")
    spool.put_many([result(run_id) for run_id in range(600, 0, -1)])  # oldest is run 600
    async with reporting(spool, controller.address) as reporter:
        # The files go before the reporter counts them (it counts after the directory fsync).
        await eventually(lambda: reporter.delivered == 600, 10.0, "all delivered")
    assert spool.count() == 0
    assert controller.batches == [BATCH_MAX_RESULTS, BATCH_MAX_RESULTS, 88]
    assert [r.run_id for r in controller.reports] == list(range(600, 0, -1))
    assert (reporter.delivered, reporter.batches) == (600, 3)
    spool.close()


def test_a_batch_is_also_cut_by_size_and_a_big_result_travels_alone():
    small, big = result(1, output="x" * 100), result(2, output="y" * 5000)
    sizes = [len(b) for b in batches([small] * 30 + [big] + [small] * 3, 256, 2000)]
    per_batch = 2000 // small.ByteSize()
    assert sizes[0] == per_batch and sum(sizes) == 34
    assert [len(b) for b in batches([big], 256, 2000)] == [1]
    assert [len(b) for b in batches([small] * 5, 2, 10_000)] == [2, 2, 1]


async def test_an_old_controller_without_report_results_gets_one_result_per_call(tmp_path):
    old = OldController()
    await old.server.start()
    spool = Spool(tmp_path, "w-test")
    spool.put_many([result(run_id) for run_id in (3, 1, 2)])
    try:
        async with reporting(spool, old.address) as reporter:
            await eventually(lambda: spool.count() == 0, 10.0, "spool emptied one by one")
            spool.put(result(4))  # later results keep going one by one, without a new probe
            reporter.wake()
            await eventually(lambda: spool.count() == 0, 10.0, "the later result delivered")
    finally:
        await old.server.stop(None)
        spool.close()
    assert [r.run_id for r in old.reports] == [3, 1, 2, 4]


async def test_the_next_controller_gets_the_batch_an_old_one_could_not_take_whole(
    tmp_path, controller
):
    """Rolling upgrade: the preferred controller is old, the other one new. Every result
    is delivered exactly once between them."""
    old = OldController()
    await old.server.start()
    spool = Spool(tmp_path, "w-test")
    spool.put_many([result(run_id) for run_id in range(1, 11)])
    try:
        async with reporting(spool, old.address, controller.address):
            await eventually(lambda: spool.count() == 0, 10.0, "spool emptied")
    finally:
        await old.server.stop(None)
        spool.close()
    delivered = [r.run_id for r in old.reports] + [r.run_id for r in controller.reports]
    assert sorted(delivered) == list(range(1, 11))


class RefusingController(FakeController):
    """Acknowledges every result but those of ``refused`` (kept by the worker)."""

    def __init__(self, refused: set[int]) -> None:
        super().__init__()
        self.refused = refused

    async def ReportResults(self, request, context):  # noqa: N802
        self.reports.extend(request.results)
        self.batches.append(len(request.results))
        return pb.ReportResultsReply(
            replies=[
                pb.ReportResultReply(acknowledged=False, detail="rejected: test")
                if r.run_id in self.refused
                else pb.ReportResultReply(acknowledged=True, detail="recorded")
                for r in request.results
            ]
        )


async def test_a_result_the_controller_refuses_stays_spooled_without_holding_up_the_rest(
    tmp_path,
):
    refusing = RefusingController({2})
    await refusing.start()
    spool = Spool(tmp_path, "w-test")
    spool.put_many([result(run_id) for run_id in (1, 2, 3)])
    try:
        async with reporting(spool, refusing.address, max_batch=2):
            await eventually(lambda: spool.count() == 1, 10.0, "the others delivered")
            await eventually(lambda: len(refusing.batches) >= 4, 10.0, "the refused one retried")
            assert spool.contains(2, 1)
            refusing.refused.clear()
            await eventually(lambda: spool.count() == 0, 10.0, "delivered once accepted")
    finally:
        await refusing.stop()
        spool.close()
    assert refusing.batches[0] == 2  # batches of max_batch; 3 went on despite 2's refusal
    assert [r.run_id for r in refusing.reports[:3]] == [1, 2, 3]
