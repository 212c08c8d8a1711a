"""The spool keeps finished results and the epoch fence on disk, atomically."""

from __future__ import annotations

import json
import os

import pytest
from google.protobuf import json_format

from proto import chronoraft_pb2 as pb
from worker.spool import Spool, SpoolLockedError, spooled_keys


def result_files(spool: Spool) -> list[str]:
    return sorted(n for n in os.listdir(spool.directory) if n.endswith(".json"))


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
    assert not [n for n in os.listdir(spool.directory) if n.endswith(".tmp")]
    assert len(result_files(spool)) == 1 and spooled_keys(spool.directory) == {(1, 1)}


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
    spool.close()
    (spool.directory / "2-1.json").write_text("not json")
    (spool.directory / "seg-00000000000000000001-0123abcd.json").write_text('{"results": [')
    reopened = Spool(tmp_path, "w1")
    assert [r.run_id for r in reopened.pending()] == [1]
    assert (spool.directory / "2-1.json.corrupt").exists()
    assert (spool.directory / "seg-00000000000000000001-0123abcd.json.corrupt").exists()


def test_results_of_the_one_file_per_result_format_are_still_delivered(tmp_path):
    directory = tmp_path / "spool" / "w1"
    directory.mkdir(parents=True)
    old = result(7, output="from an older worker")
    doc = {"format": 1, "spooled_at": 5.0, "result": json_format.MessageToDict(old)}
    (directory / "7-1.json").write_text(json.dumps(doc))
    spool = Spool(tmp_path, "w1")
    spool.put(result(8))
    assert spool.pending() == [old, result(8)]
    assert spool.get(7, 1) == old and spool.contains(7, 1)
    spool.remove(7, 1)
    assert "7-1.json" not in result_files(spool)


def test_segments_written_through_message_to_dict_are_still_delivered(tmp_path):
    """Workers before 2026-12-05 wrote each result with json_format.MessageToDict (int64 as
    a JSON string); their spools must still be delivered after an upgrade."""
    directory = tmp_path / "spool" / "w1"
    directory.mkdir(parents=True)
    old = result(2**40, output="from an older worker")
    as_dict = json_format.MessageToDict(old, preserving_proto_field_name=True)
    assert as_dict["run_id"] == str(2**40)
    doc = {"format": 2, "results": [{"spooled_at": 5.0, "result": as_dict}]}
    (directory / "seg-00000000000000000001-0123abcd.json").write_text(json.dumps(doc))
    spool = Spool(tmp_path, "w1")
    assert spool.pending() == [old]


def test_every_result_field_is_a_scalar_so_segments_can_skip_message_to_dict():
    """worker.spool._encode_segment writes ListFields() values as they are: a message or a
    repeated field added to ReportResultRequest would not be JSON."""
    fields = pb.ReportResultRequest.DESCRIPTOR.fields
    assert [f.name for f in fields if f.type == f.TYPE_MESSAGE] == []
    assert [f.name for f in fields if f.is_repeated] == []


def test_a_segment_is_deleted_once_every_result_in_it_is_acknowledged(tmp_path):
    spool = Spool(tmp_path, "w1")
    spool.put_many([result(run_id) for run_id in (1, 2, 3)])
    spool.put(result(4))
    assert len(result_files(spool)) == 2
    spool.remove_many([(1, 1), (4, 1)])
    assert len(result_files(spool)) == 1  # 2 and 3 still need it
    assert [r.run_id for r in spool.pending()] == [2, 3]
    spool.close()
    # A crash now re-sends the acknowledged 1 (a duplicate the controller recognises),
    # and loses nothing.
    reopened = Spool(tmp_path, "w1")
    assert {2, 3} <= {r.run_id for r in reopened.pending()}
    reopened.remove_many([(1, 1), (2, 1), (3, 1)])
    assert result_files(reopened) == [] and reopened.count() == 0


def test_a_result_stored_again_replaces_its_older_copy(tmp_path):
    spool = Spool(tmp_path, "w1")
    spool.put(result(1, output="first"))
    spool.put_many([result(1, output="second"), result(2)])
    assert [r.output for r in spool.pending() if r.run_id == 1] == ["second"]
    assert len(result_files(spool)) == 1  # the first file held nothing else
    spool.close()
    assert [r.output for r in Spool(tmp_path, "w1").pending() if r.run_id == 1] == ["second"]


def test_large_results_are_read_back_from_disk(tmp_path):
    spool = Spool(tmp_path, "w1")
    big = result(1, output="x" * 100_000)  # not kept in memory
    spool.put_many([big, result(2)])
    assert spool.pending() == [big, result(2)]
    assert spool.get(1, 1) == big


def count_dir_fsyncs(spool: Spool, monkeypatch) -> list[int]:
    calls: list[int] = []
    real = spool._fsync_dir
    monkeypatch.setattr(spool, "_fsync_dir", lambda: (calls.append(1), real())[1])
    return calls


def test_a_batch_is_one_file_stored_with_one_directory_fsync(tmp_path, monkeypatch):
    spool = Spool(tmp_path, "w1")
    fsyncs = count_dir_fsyncs(spool, monkeypatch)
    spool.put_many([result(run_id) for run_id in (5, 4, 3, 2, 1)])
    assert len(fsyncs) == 1 and len(result_files(spool)) == 1
    assert [r.run_id for r in spool.pending()] == [5, 4, 3, 2, 1]
    spool.remove_many([(5, 1), (3, 1), (99, 1)])  # an unknown key is no error
    assert len(fsyncs) == 1  # forgetting needs none: a lost unlink only re-sends
    assert [r.run_id for r in spool.pending()] == [4, 2, 1]
    spool.put_many([])
    assert len(fsyncs) == 1  # nothing to make durable


def test_a_batch_is_all_or_nothing(tmp_path, monkeypatch):
    spool = Spool(tmp_path, "w1")

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        spool.put_many([result(run_id) for run_id in (1, 2, 3, 4)])
    monkeypatch.undo()
    assert spool.pending() == [] and not spool.contains(1, 1)
    assert sorted(os.listdir(spool.directory)) == ["lock"]
    spool.put_many([result(run_id) for run_id in (1, 2, 3, 4)])  # the caller's retry
    assert [r.run_id for r in spool.pending()] == [1, 2, 3, 4]


def test_a_batch_is_visible_only_once_it_is_on_disk(tmp_path, monkeypatch):
    spool = Spool(tmp_path, "w1")

    def fail(_fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        spool.put_many([result(run_id) for run_id in (1, 2, 3, 4)])
    monkeypatch.undo()
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
