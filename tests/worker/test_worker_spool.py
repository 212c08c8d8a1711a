"""The spool keeps finished results and the epoch fence on disk, atomically."""

from __future__ import annotations

import os

import pytest

from proto import chronoraft_pb2 as pb
from worker.spool import Spool, SpoolLockedError


def result(run_id: int, attempt: int = 1, **fields) -> pb.ReportResultRequest:
    values = dict(
        worker_id="w1",
        run_id=run_id,
        attempt=attempt,
        state="succeeded",
        has_exit_code=True,
        exit_code=0,
        output="hello\n",
        started_at=1700000000.5,
        finished_at=1700000001.25,
    )
    values.update(fields)
    return pb.ReportResultRequest(**values)


def test_results_come_back_oldest_first_and_are_removed_by_key(tmp_path):
    spool = Spool(tmp_path, "w1")
    for run_id in (30, 10, 20):
        spool.put(result(run_id))
    assert [r.run_id for r in spool.pending()] == [30, 10, 20]
    spool.remove(10, 1)
    spool.remove(10, 1)  # removing twice is fine (a duplicate acknowledgement)
    assert [r.run_id for r in spool.pending()] == [30, 20]
    assert spool.count() == 2


def test_a_result_round_trips_exactly(tmp_path):
    spool = Spool(tmp_path, "w1")
    original = result(
        2**40,
        attempt=3,
        state="failed",
        exit_code=-9,
        output="é\x00\ufffd",
        error="boom",
        output_truncated=True,
    )
    spool.put(original)
    assert spool.pending() == [original]
    assert spool.get(2**40, 3) == original
    assert spool.get(2**40, 4) is None
    spool.close()
    # The copies above may come from memory; a new instance can only read the file.
    reopened = Spool(tmp_path, "w1")
    assert reopened.pending() == [original]
    assert reopened.get(2**40, 3) == original


def test_results_survive_a_new_spool_instance(tmp_path):
    first = Spool(tmp_path, "w1")
    first.put(result(1))
    first.put(result(2, attempt=2))
    first.close()  # the process "crashes" here
    second = Spool(tmp_path, "w1")
    assert [(r.run_id, r.attempt) for r in second.pending()] == [(1, 1), (2, 2)]
    assert second.directory == tmp_path / "spool" / "w1"


def test_results_are_written_atomically_with_no_temp_files_left(tmp_path, monkeypatch):
    spool = Spool(tmp_path, "w1")
    spool.put(result(1, output="old"))

    def crash(*_args):
        raise OSError("disk died mid-rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        spool.put(result(1, output="new"))
    monkeypatch.undo()
    assert [r.output for r in spool.pending()] == ["old"]
    assert sorted(os.listdir(spool.directory)) == ["1-1.json", "lock"]


def test_temp_files_of_a_crashed_write_are_ignored_and_cleaned(tmp_path):
    spool = Spool(tmp_path, "w1")
    spool.put(result(1))
    (spool.directory / ".2-1.json.abc.tmp").write_text('{"half": ')
    spool.close()
    reopened = Spool(tmp_path, "w1")
    assert [r.run_id for r in reopened.pending()] == [1]
    assert not [n for n in os.listdir(reopened.directory) if n.endswith(".tmp")]


def test_an_unreadable_file_is_set_aside_without_blocking_the_rest(tmp_path):
    spool = Spool(tmp_path, "w1")
    spool.put(result(1))
    (spool.directory / "2-1.json").write_text("not json")
    assert [r.run_id for r in spool.pending()] == [1]
    assert (spool.directory / "2-1.json.corrupt").exists()


def count_dir_fsyncs(spool: Spool, monkeypatch) -> list[int]:
    calls: list[int] = []
    real = spool._fsync_dir
    monkeypatch.setattr(spool, "_fsync_dir", lambda: (calls.append(1), real())[1])
    return calls


def test_a_batch_is_stored_and_forgotten_with_one_directory_fsync_each_way(tmp_path, monkeypatch):
    spool = Spool(tmp_path, "w1")
    fsyncs = count_dir_fsyncs(spool, monkeypatch)
    spool.put_many([result(run_id) for run_id in (5, 4, 3, 2, 1)])
    assert len(fsyncs) == 1
    assert [r.run_id for r in spool.pending()] == [5, 4, 3, 2, 1]
    spool.remove_many([(5, 1), (3, 1), (99, 1)])  # an unknown key is no error
    assert len(fsyncs) == 2
    assert [r.run_id for r in spool.pending()] == [4, 2, 1]
    spool.put_many([])
    spool.remove_many([])
    assert len(fsyncs) == 2  # nothing to make durable


def test_a_batch_write_failing_midway_leaves_whole_files_only(tmp_path, monkeypatch):
    spool = Spool(tmp_path, "w1")
    real_replace = os.replace
    renamed: list[str] = []

    def fail_on_third(src, dst):
        if len(renamed) == 2:
            raise OSError("disk full")
        renamed.append(str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_third)
    with pytest.raises(OSError):
        spool.put_many([result(run_id) for run_id in (1, 2, 3, 4)])
    monkeypatch.undo()
    # The caller retries the whole batch: the two stored are overwritten, none is lost.
    assert [r.run_id for r in spool.pending()] == [1, 2]
    assert not [n for n in os.listdir(spool.directory) if n.endswith(".tmp")]
    spool.put_many([result(run_id) for run_id in (1, 2, 3, 4)])
    assert sorted(r.run_id for r in spool.pending()) == [1, 2, 3, 4]


def test_a_batch_is_visible_only_once_every_file_of_it_is_on_disk(tmp_path, monkeypatch):
    spool = Spool(tmp_path, "w1")
    real_fsync = os.fsync
    synced: list[int] = []

    def fail_on_third(fd):
        synced.append(fd)
        if len(synced) == 3:
            raise OSError("I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_on_third)
    with pytest.raises(OSError):
        spool.put_many([result(run_id) for run_id in (1, 2, 3, 4)])
    monkeypatch.undo()
    # Results 1 and 2 were on disk, but under temp names: the reporter never saw them.
    assert spool.pending() == [] and not spool.contains(1, 1)
    assert sorted(os.listdir(spool.directory)) == ["lock"]


def test_epoch_is_persisted_and_never_lowered(tmp_path):
    spool = Spool(tmp_path, "w1")
    assert spool.load_epoch() == 0
    spool.save_epoch(7)
    spool.save_epoch(5)
    assert spool.load_epoch() == 7
    spool.close()
    assert Spool(tmp_path, "w1").load_epoch() == 7


def test_a_second_process_cannot_share_the_spool(tmp_path):
    spool = Spool(tmp_path, "w1")
    with pytest.raises(SpoolLockedError, match="same worker id"):
        Spool(tmp_path, "w1")
    Spool(tmp_path, "w2").close()  # another worker id is another directory
    spool.close()


def test_odd_worker_ids_make_a_safe_directory_name(tmp_path):
    spool = Spool(tmp_path, "../host/1:50051")
    assert spool.directory.parent == tmp_path / "spool"
    assert "/" not in spool.directory.name
