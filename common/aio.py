"""Timed waits that never swallow a cancellation.

On Python 3.11, ``asyncio.wait_for`` returns the inner result when the outer task is
cancelled in the same loop iteration in which the inner awaitable completes: the
cancellation is lost and the task keeps running. The chaos run found a leader loop that
could never be revoked because of it (its DAG advancer's wake event was set just as the
loop was cancelled, so the TaskGroup waited forever and the node never led again).
``asyncio.timeout`` does not have that race, so every timed wait of ours goes through
here; and since libraries still use ``wait_for``, tasks are stopped with
:func:`cancel_and_wait`, which cancels again until the task has really ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

CANCEL_PATIENCE = 1.0
"""Seconds a cancelled task gets to end before it is cancelled again."""


async def within(awaitable: Awaitable[T], timeout: float) -> T:
    """``await awaitable`` for at most ``timeout`` seconds; raises ``TimeoutError``.

    Like ``wait_for``, the awaitable is cancelled on timeout (wrap it in
    ``asyncio.shield`` to keep it running); unlike it, a cancellation of the caller always
    propagates.
    """
    async with asyncio.timeout(timeout):
        return await awaitable


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` passes; True when it was set."""
    try:
        await within(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


async def run_in_passes(wake: asyncio.Event, one_pass: Callable[[], Awaitable[float]]) -> None:
    """Run ``one_pass`` over and over; between passes wait for ``wake`` or for the timeout
    the pass returned.

    The event is cleared *before* each pass. Cleared after it, a wake-up that came during
    the pass was lost: the dispatcher had read the queue, the tick then added runs and set
    the event, and the clear that followed left those runs waiting for the next timeout
    (0.5 s after a failover, in 2 of 30 kills of one benchmark run). Cleared before, the
    pass sees everything that woke it and a later wake-up brings the next pass at once.
    """
    while True:
        wake.clear()
        await wait_event(wake, await one_pass())


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], patience: float = CANCEL_PATIENCE
) -> int:
    """Cancel ``tasks`` and return once every one has ended; returns the re-cancel rounds.

    A single ``cancel()`` is not enough on Python 3.11: code that waits with
    ``asyncio.wait_for`` (psycopg_pool does, while a client waits for a connection) can lose
    it, and the task then runs on as if nothing happened. So a task still running after
    ``patience`` seconds is cancelled again, until it ends. Being cancelled while waiting
    here does not abandon the tasks: the wait goes on and the cancellation is re-raised at
    the end, so a caller's cleanup never leaves a task behind.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    interrupted = False
    rounds = 0
    loop = asyncio.get_running_loop()
    while pending:
        for task in pending:
            task.cancel()
        deadline = loop.time() + patience
        while pending and (remaining := deadline - loop.time()) > 0:
            try:
                _, pending = await asyncio.wait(pending, timeout=remaining)
            except asyncio.CancelledError:
                interrupted = True
        if pending:
            rounds += 1
            log.warning(
                "cancellation lost by %s; cancelling again",
                ", ".join(sorted(task.get_name() for task in pending)),
            )
    for task in tasks:  # mark failures as seen; the caller may still ask for them
        if not task.cancelled():
            task.exception()
    if interrupted:
        raise asyncio.CancelledError
    return rounds
