"""WorkerService over real gRPC: fencing, capacity, idempotency, cancellation, supersession."""

from __future__ import annotations

import time

import pytest
from worker_testkit import Harness, eventually, run_request

from proto import chronoraft_pb2 as pb
from worker.orphans import RunningMarks, process_start_ticks
from worker.spool import Spool


async def test_an_accepted_attempt_runs_and_its_result_is_spooled(worker):
    reply = await worker.stub.RunTask(run_request(1, "echo hi; exit 4"), timeout=5)
    assert reply.accepted and reply.reason == "" and reply.started_at > 0
    report = await worker.result(1)
    assert report.worker_id == "w-test"
    assert (report.state, report.has_exit_code, report.exit_code) == ("failed", True, 4)
    assert report.output == "hi\n" and report.error == "exit status 4"
    assert report.started_at == pytest.approx(reply.started_at)
    assert worker.results_ready == 1


async def test_stale_epoch_is_refused_and_the_fence_survives_a_restart(tmp_path):
    first = await Harness(tmp_path).start()
    reply = await first.stub.RunTask(run_request(1, "true", epoch=5), timeout=5)
    assert reply.accepted and reply.highest_epoch == 5
    stale = await first.stub.RunTask(run_request(2, "true", epoch=4), timeout=5)
    assert (stale.accepted, stale.reason, stale.highest_epoch) == (False, "stale_epoch", 5)
    await first.result(1)
    await first.stop()

    restarted = await Harness(tmp_path).start()
    try:
        stale = await restarted.stub.RunTask(run_request(3, "true", epoch=4), timeout=5)
        assert (stale.accepted, stale.reason) == (False, "stale_epoch")
        current = await restarted.stub.RunTask(run_request(3, "true", epoch=5), timeout=5)
        assert current.accepted
        cancel = await restarted.stub.CancelTask(
            pb.CancelTaskRequest(run_id=3, attempt=1, epoch=1), timeout=5
        )
        assert not cancel.found
    finally:
        await restarted.stop()


async def test_at_capacity_refuses_until_a_slot_frees(worker):
    for run_id in (1, 2):
        assert (await worker.stub.RunTask(run_request(run_id, "sleep 30"), timeout=5)).accepted
    full = await worker.stub.RunTask(run_request(3, "true"), timeout=5)
    assert (full.accepted, full.reason) == (False, "at_capacity")
    await worker.stub.CancelTask(pb.CancelTaskRequest(run_id=1, attempt=1, epoch=1), timeout=5)
    await worker.result(1)
    assert (await worker.stub.RunTask(run_request(3, "true"), timeout=5)).accepted


async def test_a_duplicate_runtask_does_not_start_the_attempt_again(worker, tmp_path):
    marker = tmp_path / "starts"
    command = f"echo started >> {marker}; sleep 0.5"
    first = await worker.stub.RunTask(run_request(1, command), timeout=5)
    while_running = await worker.stub.RunTask(run_request(1, command), timeout=5)
    assert while_running.accepted and while_running.reason == "duplicate"
    assert while_running.started_at == first.started_at
    await worker.result(1)
    after_finish = await worker.stub.RunTask(run_request(1, command), timeout=5)
    assert after_finish.accepted and after_finish.reason == "duplicate"
    assert marker.read_text() == "started\n"


async def test_a_spooled_result_makes_runtask_a_duplicate_after_a_restart(tmp_path):
    marker = tmp_path / "starts"
    first = await Harness(tmp_path).start()
    await first.stub.RunTask(run_request(1, f"echo x >> {marker}"), timeout=5)
    await first.result(1)
    await first.stop()
    restarted = await Harness(tmp_path).start()
    try:
        reply = await restarted.stub.RunTask(run_request(1, f"echo x >> {marker}"), timeout=5)
        assert reply.accepted and reply.reason == "duplicate"
        assert marker.read_text() == "x\n"
    finally:
        await restarted.stop()


async def test_cancel_task_kills_the_attempt_and_it_is_reported_cancelled(worker):
    await worker.stub.RunTask(run_request(1, "sleep 30"), timeout=5)
    stale = await worker.stub.CancelTask(
        pb.CancelTaskRequest(run_id=1, attempt=1, epoch=0), timeout=5
    )
    assert stale.found is False  # epoch 0 < 1 seen with RunTask
    unknown = await worker.stub.CancelTask(
        pb.CancelTaskRequest(run_id=1, attempt=2, epoch=1), timeout=5
    )
    assert unknown.found is False
    reply = await worker.stub.CancelTask(
        pb.CancelTaskRequest(run_id=1, attempt=1, epoch=1), timeout=5
    )
    assert reply.found is True
    report = await worker.result(1)
    assert (report.state, report.error) == ("cancelled", "cancelled by controller")
    assert report.exit_code == -15


async def test_a_newer_attempt_cancels_the_older_one(worker):
    await worker.stub.RunTask(run_request(1, "sleep 30", attempt=1), timeout=5)
    newer = await worker.stub.RunTask(run_request(1, "echo two", attempt=2), timeout=5)
    assert newer.accepted
    older = await worker.result(1, 1)
    assert (older.state, older.error) == ("cancelled", "superseded by attempt 2")
    assert (await worker.result(1, 2)).output == "two\n"


async def test_an_older_attempt_arriving_late_is_refused(worker):
    await worker.stub.RunTask(run_request(1, "sleep 30", attempt=2), timeout=5)
    late = await worker.stub.RunTask(run_request(1, "true", attempt=1), timeout=5)
    assert (late.accepted, late.reason) == (False, "superseded")


async def test_a_draining_worker_refuses_new_work_but_answers_duplicates(worker):
    await worker.stub.RunTask(run_request(1, "sleep 30"), timeout=5)
    worker.service.start_draining()
    refused = await worker.stub.RunTask(run_request(2, "true"), timeout=5)
    assert (refused.accepted, refused.reason) == (False, "draining")
    duplicate = await worker.stub.RunTask(run_request(1, "sleep 30"), timeout=5)
    assert duplicate.accepted and duplicate.reason == "duplicate"


async def test_a_missing_executable_is_accepted_and_reported_failed(worker):
    request = pb.RunTaskRequest(run_id=1, attempt=1, epoch=1, command="/no/such", args=["x"])
    assert (await worker.stub.RunTask(request, timeout=5)).accepted
    report = await worker.result(1)
    assert (report.state, report.has_exit_code) == ("failed", False)
    assert report.error == "executable not found: /no/such"


async def test_request_without_output_limit_uses_the_worker_default(worker):
    command = "head -c 10000 /dev/zero | tr '\\0' y"
    await worker.stub.RunTask(run_request(1, command), timeout=5)
    await worker.stub.RunTask(run_request(2, command, output_limit_bytes=10), timeout=5)
    default, explicit = await worker.result(1), await worker.result(2)
    assert len(default.output) == 4096 and default.output_truncated  # settings default
    assert explicit.output == "y" * 10


async def test_start_lateness_is_measured_from_the_slot(worker):
    request = run_request(1, "true", scheduled_for=time.time() - 3.0)
    await worker.stub.RunTask(request, timeout=5)
    text = worker.metrics.render().decode()
    assert "chronoraft_worker_start_lateness_seconds_count 1.0" in text
    assert 'chronoraft_worker_start_lateness_seconds_bucket{le="2.5"} 0.0' in text
    assert 'chronoraft_worker_start_lateness_seconds_bucket{le="5.0"} 1.0' in text


async def test_run_tasks_answers_each_task_in_order_as_run_task_would(worker):
    """Capacity is 2 here: of three tasks in one call, two start and the third is refused,
    and its reply stands at its own position."""
    batch = pb.RunTasksRequest(
        tasks=[run_request(1, "echo one"), run_request(2, "sleep 30"), run_request(3, "true")]
    )
    replies = (await worker.stub.RunTasks(batch, timeout=5)).replies
    assert [r.accepted for r in replies] == [True, True, False]
    assert replies[2].reason == "at_capacity"
    assert (await worker.result(1)).output == "one\n"
    again = await worker.stub.RunTasks(pb.RunTasksRequest(tasks=[run_request(2, "x")]), timeout=5)
    assert (again.replies[0].accepted, again.replies[0].reason) == (True, "duplicate")
    await worker.stub.CancelTask(pb.CancelTaskRequest(run_id=2, attempt=1, epoch=1), timeout=5)
    assert (await worker.result(2)).state == "cancelled"


async def test_an_attempt_is_marked_before_runtask_answers_and_unmarked_once_spooled(tmp_path):
    worker = await Harness(tmp_path, marks=True).start()
    try:
        reply = await worker.stub.RunTask(run_request(1, "sleep 30"), timeout=5)
        assert reply.accepted
        [mark] = RunningMarks(worker.spool).all()  # what a restart would find right now
        assert (mark.run_id, mark.attempt, mark.started_at) == (1, 1, reply.started_at)
        stamp = process_start_ticks(mark.pgid)
        assert stamp is not None and mark.start_ticks is not None
        assert mark.start_ticks <= stamp <= (mark.start_ticks_max or mark.start_ticks)
        await worker.stub.CancelTask(pb.CancelTaskRequest(run_id=1, attempt=1, epoch=1), timeout=5)
        assert (await worker.result(1)).state == "cancelled"
        assert await worker.service.wait_idle(5.0)
        assert RunningMarks(worker.spool).all() == []
    finally:
        await worker.stop()


async def test_results_of_attempts_ending_together_are_all_on_disk_when_they_count_as_done(
    tmp_path, monkeypatch
):
    writes: list[int] = []
    store = Spool.put_many

    def counted(spool: Spool, results) -> None:
        writes.append(len(results))
        store(spool, results)

    monkeypatch.setattr(Spool, "put_many", counted)
    worker = await Harness(tmp_path, marks=True, worker_concurrency=40).start()
    try:
        batch = pb.RunTasksRequest(tasks=[run_request(i, f"echo {i}") for i in range(1, 41)])
        reply = await worker.stub.RunTasks(batch, timeout=10)
        assert all(r.accepted for r in reply.replies)
        await eventually(lambda: worker.results_ready == 40, 10.0, "every attempt finished")
        # The worker dies here: no drain, no close; only what is on disk counts.
        worker.spool.close()
        restarted = Spool(worker.settings.data_dir, worker.settings.effective_worker_id)
        found = {r.run_id: r.output for r in restarted.pending()}
        assert found == {i: f"{i}\n" for i in range(1, 41)}
        assert RunningMarks(restarted).all() == []
        assert sum(writes) == 40
        restarted.close()
    finally:
        await worker.stop()


async def test_a_spool_write_that_fails_is_retried_and_no_result_is_lost(tmp_path, monkeypatch):
    failures = [OSError("No space left on device")]
    store = Spool.put_many

    def failing_once(spool: Spool, results) -> None:
        if failures:
            raise failures.pop()
        store(spool, results)

    monkeypatch.setattr(Spool, "put_many", failing_once)
    worker = await Harness(tmp_path, worker_concurrency=5).start()
    try:
        batch = pb.RunTasksRequest(tasks=[run_request(i, "true") for i in range(1, 6)])
        assert all(r.accepted for r in (await worker.stub.RunTasks(batch, timeout=5)).replies)
        for run_id in range(1, 6):
            assert (await worker.result(run_id)).state == "succeeded"
        assert not failures
    finally:
        await worker.stop()
