"""A restarted worker ends the attempts its previous process left running, and only those."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from worker_testkit import eventually, process_gone

from proto import chronoraft_pb2 as pb
from worker import orphans
from worker.executor import StartedProcess
from worker.orphans import (
    ERROR_GONE,
    ERROR_KILLED,
    Mark,
    RunningMarks,
    StartTicks,
    end_orphans,
    process_start_ticks,
)
from worker.spool import Spool


def sleeper() -> subprocess.Popen[bytes]:
    """A process group like the ones the executor starts."""
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def leave_mark(
    marks: RunningMarks, run_id: int, attempt: int, pgid: int, started_at: float
) -> None:
    """What a running worker records for an attempt it started."""
    marks.update([Mark(run_id, attempt, pgid, process_start_ticks(pgid), started_at)], [])


async def test_a_left_over_group_is_killed_and_reported_failed(tmp_path):
    spool = Spool(tmp_path, "w1")
    marks = RunningMarks(spool)
    proc = sleeper()
    try:
        leave_mark(marks, 5, 2, proc.pid, started_at=123.0)
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
        leave_mark(marks, 5, 1, proc.pid, started_at=1.0)
        # Pretend the recorded process started at another time: the pid was reused since.
        path = marks.path
        path.write_text(path.read_text().replace('"start_ticks": ', '"start_ticks": 1'))
        await end_orphans(marks, spool, "w1", grace=0.5)
        assert not process_gone(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    [report] = spool.pending()
    assert report.error == ERROR_GONE


async def test_a_mark_with_a_start_bracket_kills_the_group_started_inside_it_only(tmp_path):
    spool = Spool(tmp_path, "w1")
    marks = RunningMarks(spool)
    ours, other = sleeper(), sleeper()
    try:
        for run_id, proc, shift in ((1, ours, 0), (2, other, 2)):
            stamp = process_start_ticks(proc.pid)
            assert stamp is not None
            low, high = stamp - 1 + shift, stamp + shift
            marks.update([Mark(run_id, 1, proc.pid, low, 1.0, high)], [])
        assert await end_orphans(marks, spool, "w1", grace=0.5) == 2
        await eventually(lambda: ours.poll() is not None, 3.0, "our orphan to die")
        assert not process_gone(other.pid)
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()
    errors = {report.run_id: report.error for report in spool.pending()}
    assert errors == {1: ERROR_KILLED, 2: ERROR_GONE}


NO_SUCH_PID = 2**22 + 7
"""Above the largest pid_max: reading it from /proc fails."""


@pytest.fixture
def stamped() -> Iterator[tuple[int, int]]:
    """A live process and its start stamp as /proc gives it."""
    proc = sleeper()
    try:
        stamp = process_start_ticks(proc.pid)
        assert stamp is not None
        yield proc.pid, stamp
    finally:
        proc.kill()
        proc.wait()


def test_start_stamps_come_from_the_bracket_once_the_first_process_confirmed_it(stamped):
    pid, stamp = stamped
    ticks = StartTicks()
    assert ticks.of(StartedProcess(pid, (stamp, stamp + 1))) == (stamp, stamp)
    # Trusted from now on: no /proc read (the pid does not exist).
    assert ticks.of(StartedProcess(NO_SUCH_PID, (50, 51))) == (50, 51)


def test_start_stamps_are_read_from_proc_where_the_bracket_misses_the_first_process(stamped):
    pid, stamp = stamped
    ticks = StartTicks()
    assert ticks.of(StartedProcess(pid, (stamp + 5, stamp + 6))) == (stamp, stamp)
    assert ticks.of(StartedProcess(pid, (stamp + 5, stamp + 6))) == (stamp, stamp)
    assert ticks.of(StartedProcess(NO_SUCH_PID, (50, 51))) == (None, None)


async def test_an_attempt_whose_result_is_spooled_is_not_reported_twice(tmp_path):
    spool = Spool(tmp_path, "w1")
    marks = RunningMarks(spool)
    spool.put(pb.ReportResultRequest(run_id=9, attempt=1, state="succeeded"))
    leave_mark(marks, 9, 1, 999_999_999, started_at=1.0)  # crash between spooling and unmarking
    await end_orphans(marks, spool, "w1")
    assert [r.state for r in spool.pending()] == ["succeeded"]
    assert marks.all() == []


def test_a_successor_finds_the_marks_of_the_attempts_running_when_the_worker_died(tmp_path):
    spool = Spool(tmp_path, "w1")
    dying = RunningMarks(spool)
    dying.update([Mark(1, 1, 101, 5, 1.0), Mark(2, 1, 102, 6, 2.0), Mark(3, 1, 103, 7, 3.0)], [])
    dying.update([Mark(4, 2, 104, 8, 4.0)], [(2, 1), (4, 2)])
    # Killed here: nothing closed, nothing flushed beyond the writes themselves.
    found = RunningMarks(spool).all()
    assert sorted(found, key=lambda m: m.run_id) == [
        Mark(1, 1, 101, 5, 1.0),
        Mark(3, 1, 103, 7, 3.0),
    ]


def test_the_journal_is_rewritten_to_its_running_marks_once_it_has_grown(tmp_path, monkeypatch):
    monkeypatch.setattr(orphans, "COMPACT_BYTES", 4096)
    spool = Spool(tmp_path, "w1")
    marks = RunningMarks(spool)
    marks.update([Mark(0, 1, 100, 1, 0.0)], [])  # runs throughout
    for run_id in range(1, 200):
        marks.update([Mark(run_id, 1, 100 + run_id, 1, 0.0)], [])
        marks.update([], [(run_id, 1)])
        assert marks.path.stat().st_size <= 4096
    assert RunningMarks(spool).all() == [Mark(0, 1, 100, 1, 0.0)]


def test_a_line_torn_by_a_crash_is_skipped_and_does_not_garble_later_marks(tmp_path):
    spool = Spool(tmp_path, "w1")
    dying = RunningMarks(spool)
    dying.update([Mark(1, 1, 101, 5, 1.0)], [])
    with open(dying.path, "a") as journal:
        journal.write('{"run_id": 2, "attempt": 1, "pg')  # the process died mid-write
    successor = RunningMarks(spool)
    assert successor.all() == [Mark(1, 1, 101, 5, 1.0)]
    successor.update([Mark(3, 1, 103, 7, 3.0)], [])
    assert sorted(m.run_id for m in RunningMarks(spool).all()) == [1, 3]


async def test_marks_left_one_file_each_by_an_older_version_are_still_ended(tmp_path):
    spool = Spool(tmp_path, "w1")
    marks = RunningMarks(spool)
    proc = sleeper()
    legacy = marks.directory / "5-2.json"
    try:
        doc = {
            "run_id": 5,
            "attempt": 2,
            "pgid": proc.pid,
            "start_ticks": process_start_ticks(proc.pid),
            "started_at": 123.0,
        }
        legacy.write_text(json.dumps(doc))
        assert await end_orphans(marks, spool, "w1", grace=0.5) == 1
        await eventually(lambda: proc.poll() is not None, 3.0, "orphan to die")
    finally:
        proc.kill()
        proc.wait()
    [report] = spool.pending()
    assert (report.run_id, report.attempt, report.error) == (5, 2, ERROR_KILLED)
    assert not legacy.exists()
    assert marks.all() == []
