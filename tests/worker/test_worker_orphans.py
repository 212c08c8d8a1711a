"""A restarted worker ends the attempts its previous process left running, and only those."""

from __future__ import annotations

import subprocess

from worker_testkit import eventually, process_gone

from proto import chronoraft_pb2 as pb
from worker.orphans import ERROR_GONE, ERROR_KILLED, RunningMarks, end_orphans
from worker.spool import Spool


def sleeper() -> subprocess.Popen[bytes]:
    """A process group like the ones the executor starts."""
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


async def test_a_left_over_group_is_killed_and_reported_failed(tmp_path):
    spool = Spool(tmp_path, "w1")
    marks = RunningMarks(spool)
    proc = sleeper()
    try:
        marks.add(5, 2, proc.pid, started_at=123.0)
        assert await end_orphans(marks, spool, "w1", grace=0.5) == 1
        await eventually(lambda: proc.poll() is not None, 3.0, "orphan to die")
    finally:
        proc.kill()
        proc.wait()
    [report] = spool.pending()
    assert (report.run_id, report.attempt, report.state) == (5, 2, "failed")
    assert (report.error, report.started_at, report.worker_id) == (ERROR_KILLED, 123.0, "w1")
    assert marks.all() == []


async def test_a_reused_pid_is_not_killed(tmp_path):
    spool = Spool(tmp_path, "w1")
    marks = RunningMarks(spool)
    proc = sleeper()
    try:
        marks.add(5, 1, proc.pid, started_at=1.0)
        # Pretend the recorded process started at another time: the pid was reused since.
        path = marks.directory / "5-1.json"
        path.write_text(path.read_text().replace('"start_ticks": ', '"start_ticks": 1'))
        await end_orphans(marks, spool, "w1", grace=0.5)
        assert not process_gone(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    [report] = spool.pending()
    assert report.error == ERROR_GONE


async def test_an_attempt_whose_result_is_spooled_is_not_reported_twice(tmp_path):
    spool = Spool(tmp_path, "w1")
    marks = RunningMarks(spool)
    spool.put(pb.ReportResultRequest(run_id=9, attempt=1, state="succeeded"))
    marks.add(9, 1, 999_999_999, started_at=1.0)  # crash between spooling and unmarking
    await end_orphans(marks, spool, "w1")
    assert [r.state for r in spool.pending()] == ["succeeded"]
    assert marks.all() == []
