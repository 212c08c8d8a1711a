"""A whole worker (run_worker) against a stand-in ControllerService over real gRPC."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import grpc
import pytest
from worker_testkit import (
    FakeController,
    RunningWorker,
    eventually,
    free_port,
    process_gone,
    registered,
    run_request,
    running_worker,
    worker_settings,
)

from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc
from worker.main import WorkerStartupError, run_worker
from worker.spool import Spool, spooled_keys

ROOT = Path(__file__).resolve().parents[2]


def start_worker_process(
    data_dir: Path, worker_id: str, port: int, controller: str
) -> subprocess.Popen[str]:
    """``worker.main.main`` in a real process, configured through CHRONORAFT_* variables."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CHRONORAFT_DATA_DIR": str(data_dir),
        "CHRONORAFT_WORKER_ID": worker_id,
        "CHRONORAFT_WORKER_PORT": str(port),
        "CHRONORAFT_CONTROLLERS": controller,
        "CHRONORAFT_HEARTBEAT_INTERVAL": "0.1",
    }
    code = "import sys; from common.settings import Settings; from worker.main import main; "
    code += "sys.exit(main(Settings.from_env()))"
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True
    )


async def test_worker_registers_by_heartbeat_and_delivers_results(tmp_path, controller):
    settings = worker_settings(tmp_path, (controller.address,), drain_timeout=0.5)
    async with running_worker(settings) as worker:
        hello = await registered(worker, controller)
        assert hello.worker_id == "w-test"
        assert hello.address.startswith("127.0.0.1:") and not hello.address.endswith(":0")
        assert dict(hello.labels) == {"pool": "test"}
        assert hello.capacity == 2 and not hello.draining and hello.version

        reply = await worker.stub.RunTask(run_request(7, "echo done", epoch=3), timeout=5)
        assert reply.accepted
        await eventually(lambda: controller.report_for(7), 5.0, "result delivered")
        report = controller.report_for(7)
        assert (report.state, report.output, report.worker_id) == ("succeeded", "done\n", "w-test")
        spool_dir = Path(settings.data_dir) / "spool" / "w-test"
        await eventually(lambda: not spooled_keys(spool_dir), 5.0, "spool emptied")

        # While it runs, the attempt shows up in heartbeats.
        await worker.stub.RunTask(run_request(8, "sleep 30", epoch=3), timeout=5)
        await eventually(
            lambda: any(
                [(t.run_id, t.attempt) for t in hb.running] == [(8, 1)]
                for hb in controller.heartbeats[-3:]
            ),
            5.0,
            "running attempt in a heartbeat",
        )


async def test_a_result_made_while_controllers_are_down_is_delivered_when_one_returns(
    tmp_path, controller
):
    dead = f"127.0.0.1:{free_port()}"  # first in the list and never up: failover past it
    settings = worker_settings(tmp_path, (dead, controller.address))
    async with running_worker(settings) as worker:
        await registered(worker, controller)
        port = controller.port
        await controller.stop()

        await worker.stub.RunTask(run_request(1, "echo while down"), timeout=5)
        spool_dir = Path(settings.data_dir) / "spool" / "w-test"
        await eventually(lambda: (1, 1) in spooled_keys(spool_dir), 5.0, "result spooled")
        assert controller.report_for(1) is None

        returned = FakeController()
        await returned.start(port)
        try:
            await eventually(lambda: returned.report_for(1), 8.0, "delivery after return")
            assert returned.report_for(1).output == "while down\n"
            await eventually(lambda: not spooled_keys(spool_dir), 5.0, "spool emptied")
        finally:
            await worker.shutdown()
            await returned.stop()


async def test_an_unacknowledged_result_stays_spooled_and_is_retried(tmp_path, controller):
    controller.acknowledge = False
    settings = worker_settings(tmp_path, (controller.address,))
    async with running_worker(settings) as worker:
        await registered(worker, controller)
        await worker.stub.RunTask(run_request(1, "true"), timeout=5)
        await eventually(lambda: len(controller.reports) >= 2, 5.0, "a retry")
        spool_dir = Path(settings.data_dir) / "spool" / "w-test"
        assert (1, 1) in spooled_keys(spool_dir)
        controller.acknowledge = True
        await eventually(lambda: not spooled_keys(spool_dir), 5.0, "spool emptied after ack")


async def test_results_spooled_before_a_crash_are_delivered_after_restart(tmp_path, controller):
    settings = worker_settings(tmp_path, (controller.address,))
    crashed = Spool(settings.data_dir, "w-test")
    crashed.put(pb.ReportResultRequest(worker_id="w-test", run_id=41, attempt=2, state="failed"))
    crashed.close()
    async with running_worker(settings):
        await eventually(lambda: controller.report_for(41, 2), 5.0, "old result delivered")


async def test_after_a_worker_crash_its_results_are_delivered_and_orphans_ended(
    tmp_path, controller
):
    controller.acknowledge = False  # nothing gets out before the crash
    proc = start_worker_process(tmp_path / "data", "w-test", free_port(), controller.address)
    try:
        await eventually(lambda: controller.heartbeats, 10.0, "registration of the process")
        channel = grpc.aio.insecure_channel(controller.heartbeats[0].address)
        stub = pb_grpc.WorkerServiceStub(channel)
        pid_file = tmp_path / "orphan.pid"
        await stub.RunTask(run_request(1, "echo finished before the crash"), timeout=5)
        await stub.RunTask(run_request(2, f"echo $$ > {pid_file}; exec sleep 60"), timeout=5)
        await eventually(lambda: controller.report_for(1), 5.0, "an unacknowledged report")
        await eventually(lambda: pid_file.exists() and pid_file.read_text(), 5.0, "pid file")
        await channel.close()
    finally:
        proc.kill()  # SIGKILL: no drain, no cleanup
        await asyncio.to_thread(proc.wait, 10)
        proc.stderr.close()
    orphan = int(pid_file.read_text())
    assert not process_gone(orphan), "attempts run in their own session and outlive the worker"

    controller.acknowledge = True
    controller.reports.clear()
    async with running_worker(worker_settings(tmp_path, (controller.address,))):
        await eventually(lambda: controller.report_for(1), 5.0, "spooled result delivered")
        await eventually(lambda: controller.report_for(2), 5.0, "orphan reported")
        assert controller.report_for(1).output == "finished before the crash\n"
        orphan_report = controller.report_for(2)
        assert orphan_report.state == "failed"
        assert "worker restarted" in orphan_report.error
        await eventually(lambda: process_gone(orphan), 5.0, "orphan killed")


async def test_stop_drains_running_attempts_and_flushes_their_results(tmp_path, controller):
    settings = worker_settings(tmp_path, (controller.address,))
    worker = RunningWorker(settings)
    await registered(worker, controller)
    await worker.stub.RunTask(run_request(1, "sleep 1; echo finished"), timeout=5)
    worker.stop.set()
    await eventually(lambda: any(hb.draining for hb in controller.heartbeats), 5.0, "draining")
    refused = await worker.stub.RunTask(run_request(2, "true"), timeout=5)
    assert (refused.accepted, refused.reason) == (False, "draining")
    await worker.shutdown()
    report = controller.report_for(1)
    assert report is not None, "result flushed before exit"
    assert (report.state, report.output) == ("succeeded", "finished\n")
    last = controller.heartbeats[-1]
    assert last.draining and list(last.running) == []


async def test_attempts_still_running_at_drain_timeout_are_cancelled_and_reported(
    tmp_path, controller
):
    settings = worker_settings(tmp_path, (controller.address,), drain_timeout=0.3)
    worker = RunningWorker(settings)
    await registered(worker, controller)
    await worker.stub.RunTask(run_request(1, "sleep 60"), timeout=5)
    await worker.shutdown()
    report = controller.report_for(1)
    assert report is not None
    assert (report.state, report.error) == ("cancelled", "cancelled: worker shutting down")


async def test_heartbeat_epoch_raises_the_fence(tmp_path, controller):
    controller.epoch = 9  # the controller's view of PostgreSQL: a new leader took over
    settings = worker_settings(tmp_path, (controller.address,))
    async with running_worker(settings) as worker:
        await registered(worker, controller)
        await eventually(lambda: len(controller.heartbeats) >= 2, 5.0, "second heartbeat")
        stale = await worker.stub.RunTask(run_request(1, "true", epoch=8), timeout=5)
        assert (stale.accepted, stale.reason, stale.highest_epoch) == (False, "stale_epoch", 9)


async def test_healthz_and_metrics_are_served(tmp_path, controller):
    http_port = free_port()
    settings = worker_settings(tmp_path, (controller.address,), worker_http_port=http_port)
    async with running_worker(settings) as worker:
        await registered(worker, controller)
        await worker.stub.RunTask(run_request(1, "exit 1"), timeout=5)
        await eventually(lambda: controller.report_for(1), 5.0, "result delivered")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{http_port}/healthz") as resp:
                assert resp.status == 200
                assert await resp.json() == {"status": "ok", "worker_id": "w-test"}
            async with http.get(f"http://127.0.0.1:{http_port}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                text = await resp.text()
    assert "chronoraft_worker_tasks_started_total 1.0" in text
    assert 'chronoraft_worker_tasks_finished_total{state="failed"} 1.0' in text
    assert "chronoraft_worker_capacity 2.0" in text
    assert "chronoraft_worker_running 0.0" in text
    assert "chronoraft_worker_report_errors_total" in text
    assert "chronoraft_worker_spool_pending" in text


async def test_a_taken_port_is_a_clear_start_error(tmp_path, controller):
    first = worker_settings(tmp_path, (controller.address,))
    async with running_worker(first) as worker:
        hello = await registered(worker, controller)
        port = int(hello.address.rsplit(":", 1)[1])
        second = worker_settings(tmp_path / "b", (controller.address,), worker_port=port)
        with pytest.raises(WorkerStartupError, match=f"127.0.0.1:{port}"):
            await asyncio.wait_for(run_worker(second, asyncio.Event()), 5)


async def test_worker_process_exits_cleanly_on_sigterm(tmp_path, controller):
    port = free_port()
    proc = start_worker_process(tmp_path, "w-proc", port, controller.address)
    try:
        await eventually(lambda: controller.heartbeats, 10.0, "registration of the process")
        assert controller.heartbeats[0].address == f"127.0.0.1:{port}"
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 10)
        stderr = proc.stderr.read()
        assert rc == 0, stderr
        assert "worker stopped" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
