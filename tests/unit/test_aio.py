"""common.aio: timed waits that a cancellation always gets through (the chaos-run bug)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from common.aio import cancel_and_wait, run_in_passes, wait_event, within

Waiter = Callable[[asyncio.Event, float], Awaitable[object]]


async def _wait_for_event(event: asyncio.Event, timeout: float) -> object:
    """The pattern the leader loop used before: asyncio.wait_for around Event.wait."""
    try:
        return await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False


async def _cancel_as_the_event_fires(wait: Waiter) -> bool:
    """A loop that waits on an event is cancelled in the same iteration the event is set.

    Returns True when the cancellation ended the loop, False when it was swallowed.
    """
    event = asyncio.Event()
    laps = 0

    async def loop_forever() -> None:
        nonlocal laps
        while True:
            event.clear()
            await wait(event, 10.0)
            laps += 1

    task = asyncio.create_task(loop_forever())
    await asyncio.sleep(0.01)  # parked inside the wait
    event.set()
    await asyncio.sleep(0)  # event.wait() completes; the outer wait has not resumed yet
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:
        task.cancel()  # swallowed once; a second cancel lands on a fresh wait
        await asyncio.wait({task}, timeout=1.0)
        return False
    return task.cancelled()


async def test_asyncio_wait_for_loses_the_race_on_this_python() -> None:
    """Documents why common.aio exists; if a Python fixes wait_for, this tells us."""
    import sys

    lost = not await _cancel_as_the_event_fires(_wait_for_event)
    if sys.version_info < (3, 12):
        assert lost
    else:
        assert not lost


async def test_wait_event_never_swallows_that_cancellation() -> None:
    for _ in range(20):
        assert await _cancel_as_the_event_fires(wait_event)


async def test_wait_event_reports_set_and_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True


async def test_within_times_out_and_cancels_the_awaitable() -> None:
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(slow())
    with pytest.raises(TimeoutError):
        await within(task, 0.05)
    assert started.is_set()
    assert task.cancelled()


async def test_within_with_shield_keeps_the_awaitable_running() -> None:
    task = asyncio.create_task(asyncio.sleep(0.1, result="done"))
    with pytest.raises(TimeoutError):
        await within(asyncio.shield(task), 0.01)
    assert await task == "done"


async def test_cancel_and_wait_cancels_again_until_a_swallowing_task_ends() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 3:
                    raise

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    rounds = await cancel_and_wait([task], patience=0.05)
    assert task.cancelled()
    assert swallowed == 3
    assert rounds == 2


async def test_cancel_and_wait_finishes_its_job_when_itself_cancelled() -> None:
    ended = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.1)  # cleanup that takes a while
            ended.set()

    child = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait([child], patience=1.0))
    await asyncio.sleep(0.01)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert ended.is_set() and child.done()


async def test_cancel_and_wait_marks_failures_as_retrieved() -> None:
    async def boom() -> None:
        raise ValueError("x")

    task = asyncio.create_task(boom())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task]) == 0
    assert isinstance(task.exception(), ValueError)


async def test_a_wake_up_during_a_pass_brings_the_next_pass_at_once() -> None:
    """The leader's loops read the database in a pass; work written while the pass runs
    sets the event. Cleared after the pass, that wake-up was lost until the timeout."""
    wake = asyncio.Event()
    passes = 0
    second_pass = asyncio.Event()

    async def one_pass() -> float:
        nonlocal passes
        passes += 1
        if passes == 1:
            await asyncio.sleep(0)  # the pass has read what there was ...
            wake.set()  # ... when new work arrives
        else:
            second_pass.set()
        return 60.0

    loop = asyncio.create_task(run_in_passes(wake, one_pass))
    try:
        assert await wait_event(second_pass, 5.0), "the wake-up was lost until the timeout"
    finally:
        await cancel_and_wait([loop])


async def test_a_wake_up_before_a_pass_is_taken_by_that_pass() -> None:
    wake = asyncio.Event()
    wake.set()
    passes = 0

    async def one_pass() -> float:
        nonlocal passes
        passes += 1
        return 60.0

    loop = asyncio.create_task(run_in_passes(wake, one_pass))
    try:
        for _ in range(20):  # turns of the loop in which a second pass would have begun
            await asyncio.sleep(0)
        assert passes == 1
    finally:
        await cancel_and_wait([loop])
