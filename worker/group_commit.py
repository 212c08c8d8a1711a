"""Group commit: one thread hand-off, and one directory fsync, for writes that queue up together.

Every attempt writes twice to disk on its way (its running mark when it starts, its result
when it ends), and under load dozens of attempts start or end in the same turn of the event
loop. Giving each write a thread of its own costs a thread hand-off and, for the spool, a
directory fsync per attempt; handing all the writes waiting at one moment to one ``flush``
call in a worker thread costs them once per batch. While flushes run, new items queue for
the next one, so batches grow with the load by themselves, and a lone item waits no longer
than one turn of the loop. The blocking I/O stays off the event loop either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Runs ``flush(items)`` in a worker thread for the items queued since the last flush.

    With ``flushers=1`` the flushes never overlap and items are flushed in the order they
    were submitted (the running marks depend on it: an attempt's "ended" must never be
    written before its "started"). More flushers let slow writes overlap (each result file
    has an fsync of its own) while the directory fsync is still shared by a batch.
    """

    def __init__(self, flush: Callable[[Sequence[T]], None], *, flushers: int = 1) -> None:
        if flushers < 1:
            raise ValueError("flushers must be at least 1")
        self._flush = flush
        self._flushers = flushers
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._starting: asyncio.Task[None] | None = None
        """A flusher created but not yet run: it will take whatever is queued meanwhile."""

    def submit(self, item: T) -> asyncio.Future[None]:
        """Queue ``item``; the future is done once a flush holding it returned (or raised).

        The flush starts on the next turn of the loop, so everything submitted in this turn
        shares it. Cancelling the future does not take the item back, it is only no longer
        waited for.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._starting is None and len(self._running) < self._flushers:
            task = asyncio.create_task(self._drain())
            self._starting = task
            self._running.add(task)
            task.add_done_callback(self._flusher_done)
        return future

    def _flusher_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._starting is task:  # cancelled before it ever ran
            self._starting = None

    async def _drain(self) -> None:
        """Flush batch after batch until the queue is empty (another flusher may share it)."""
        self._starting = None
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await asyncio.to_thread(self._flush, [item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - handed to every waiter of the batch
                    _settle(batch, exc)
                else:
                    _settle(batch, None)
                batch = []
        except asyncio.CancelledError:
            # Teardown: the thread may still finish the write, but nobody learns about it.
            for _, future in batch + self._queue:
                future.cancel()
            self._queue = []
            raise


def _settle(batch: list[tuple[T, asyncio.Future[None]]], error: Exception | None) -> None:
    for _, future in batch:
        if future.done():  # its waiter gave up (cancelled)
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
