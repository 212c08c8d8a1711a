"""GroupCommit: writes that queue up together share one flush, in order, errors reach all."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from worker.group_commit import GroupCommit


class Recorder:
    """A flush that records its batches; ``gate`` holds each flush until set."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_next: Exception | None = None

    def flush(self, items: Sequence[int]) -> None:
        self.entered.set()
        assert self.gate.wait(5.0), "flush held too long"
        self.batches.append(list(items))
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error


async def test_items_submitted_in_one_turn_share_one_flush_in_order():
    recorder = Recorder()
    commit = GroupCommit(recorder.flush)
    await asyncio.gather(*(commit.submit(i) for i in range(10)))
    assert recorder.batches == [list(range(10))]


async def test_items_submitted_during_a_flush_wait_for_the_next_one_together():
    recorder = Recorder()
    recorder.gate.clear()
    commit = GroupCommit(recorder.flush)
    first = commit.submit(0)
    await asyncio.to_thread(recorder.entered.wait, 5.0)
    later = [commit.submit(i) for i in range(1, 6)]
    assert not first.done()
    recorder.gate.set()
    await asyncio.gather(first, *later)
    assert recorder.batches == [[0], [1, 2, 3, 4, 5]]


async def test_a_failed_flush_fails_every_item_of_its_batch_and_the_next_batch_still_runs():
    recorder = Recorder()
    recorder.fail_next = OSError("disk full")
    commit = GroupCommit(recorder.flush)
    failed = [commit.submit(i) for i in range(3)]
    results = await asyncio.gather(*failed, return_exceptions=True)
    assert [type(r) for r in results] == [OSError] * 3
    await commit.submit(3)
    assert recorder.batches == [[0, 1, 2], [3]]


async def test_with_several_flushers_a_held_flush_does_not_hold_up_the_next():
    recorder = Recorder()
    recorder.gate.clear()
    commit = GroupCommit(recorder.flush, flushers=2)
    first = commit.submit(0)
    await asyncio.to_thread(recorder.entered.wait, 5.0)
    recorder.entered.clear()
    second = commit.submit(1)
    await asyncio.to_thread(recorder.entered.wait, 5.0)  # entered while the first is held
    assert not first.done()
    recorder.gate.set()
    await asyncio.gather(first, second)
    assert sorted(recorder.batches) == [[0], [1]]


async def test_a_waiter_that_gives_up_does_not_take_its_item_back():
    recorder = Recorder()
    recorder.gate.clear()
    commit = GroupCommit(recorder.flush)
    waiter = commit.submit(7)
    await asyncio.to_thread(recorder.entered.wait, 5.0)
    waiter.cancel()
    recorder.gate.set()
    await commit.submit(8)
    assert recorder.batches == [[7], [8]]


def test_at_least_one_flusher_is_required():
    with pytest.raises(ValueError):
        GroupCommit(lambda items: None, flushers=0)
