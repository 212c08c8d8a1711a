"""The one seam between Raft and the leader loop (establish / revoke leadership).

Nothing else asks "am I leader?": this manager watches the Raft node, starts a
:class:`LeaderLoop` for each new term it wins and cancels it the moment the term is lost.
A loop that ends with :class:`Fenced` is not restarted for the same term.

On a graceful stop (SIGTERM) :meth:`LeadershipManager.shutdown` ends the leader loop first
and only then hands Raft leadership to a follower, so the successor never overlaps a loop
that is still writing (fencing would stop it anyway; this way it is never even tried).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from common.aio import cancel_and_wait
from common.errors import Fenced
from common.logging import ctx
from common.settings import Settings
from controller.leader.loop import LeaderLoop
from controller.metrics import ControllerMetrics
from controller.raft import RaftNode, RaftSnapshot

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02
HANDOVER_TIMEOUT = 2.0
"""How long a stopping leader waits to see its successor before leaving anyway."""
TRANSFER_RETRY_SECONDS = 0.5
"""How long a stopping leader keeps asking while no follower is caught up enough."""


@dataclass
class LeadershipState:
    """What the API reports about this node's leadership."""

    snapshot: RaftSnapshot | None = None
    leading_epoch: int | None = None
    leading_since: float | None = None
    transitions: list[tuple[float, str, int]] = field(default_factory=list)


class LeadershipManager:
    def __init__(
        self,
        settings: Settings,
        raft: RaftNode,
        pool: AsyncConnectionPool,
        metrics: ControllerMetrics,
    ) -> None:
        self.settings = settings
        self.raft = raft
        self.pool = pool
        self.metrics = metrics
        self.state = LeadershipState()
        self._task: asyncio.Task[None] | None = None
        self._loop: LeaderLoop | None = None
        self._epoch: int | None = None
        self._dead_epochs: set[int] = set()
        self._retry_at = 0.0
        self._watch: asyncio.Task[None] | None = None

    @property
    def loop(self) -> LeaderLoop | None:
        return self._loop

    def start(self) -> None:
        """Watch Raft in a background task until :meth:`shutdown`."""
        self._watch = asyncio.create_task(self.run(), name="leadership")

    async def shutdown(self, handover_timeout: float = HANDOVER_TIMEOUT) -> None:
        """Graceful stop: end the leader loop, then hand Raft leadership to a follower.

        The loop is cancelled, not drained: each of its writes is one fenced transaction, so
        a cancelled write rolls back whole, and a run cancelled between its dispatch and the
        worker's answer is settled by the worker's heartbeat or the dispatch ack timeout, as
        after a crash. Only once no loop of ours can write does a follower get asked to take
        over (Raft ``TimeoutNow``); without that the followers elect after their election
        timeout once this node's Raft is closed.
        """
        watch, self._watch = self._watch, None
        if watch is not None:
            await cancel_and_wait([watch])  # run() revokes on its way out
        await self._revoke("shutdown")
        await self._hand_over(handover_timeout)

    async def _hand_over(self, timeout: float) -> None:
        snap = self.raft.snapshot()
        self.state.snapshot = snap
        if snap.role != "leader":
            log.info(
                "shutdown: not the Raft leader, nothing to hand over", extra=ctx(role=snap.role)
            )
            return
        started = time.monotonic()
        outcome = await asyncio.to_thread(self.raft.transfer_leadership)
        while outcome == "denied" and time.monotonic() - started < TRANSFER_RETRY_SECONDS:
            # A follower that just (re)joined may still be catching up: ask again shortly.
            await asyncio.sleep(0.05)
            outcome = await asyncio.to_thread(self.raft.transfer_leadership)
        if outcome != "sent":
            log.warning(
                "shutdown: Raft leadership transfer not possible (%s); the followers elect "
                "after their election timeout",
                outcome,
                extra=ctx(term=snap.term),
            )
            return
        while time.monotonic() - started < timeout:
            snap = self.raft.snapshot()
            self.state.snapshot = snap
            if snap.role != "leader" and snap.leader not in (None, self.raft.self_address):
                log.info(
                    "shutdown: leadership handed over",
                    extra=ctx(
                        to=snap.leader,
                        term=snap.term,
                        ms=round((time.monotonic() - started) * 1000),
                    ),
                )
                return
            if not any(snap.peers.values()):
                log.warning(
                    "shutdown: no peer left to take over (all stopping?); leaving",
                    extra=ctx(term=snap.term, role=snap.role),
                )
                return
            await asyncio.sleep(0.01)
        log.warning(
            "shutdown: no successor seen after %.1fs; leaving anyway (the followers elect "
            "after their election timeout)",
            timeout,
            extra=ctx(term=snap.term, role=snap.role),
        )

    async def run(self) -> None:
        try:
            while True:
                snap = self.raft.snapshot()
                self.state.snapshot = snap
                await self._react(snap)
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await self._revoke("shutdown")

    async def _react(self, snap: RaftSnapshot) -> None:
        if self._task is not None and self._task.done():
            self._reap_task()
        leading = snap.role == "leader"
        if self._task is not None and (not leading or snap.term != self._epoch):
            await self._revoke(f"raft role {snap.role} term {snap.term}")
        if (
            leading
            and self._task is None
            and snap.term not in self._dead_epochs
            and time.monotonic() >= self._retry_at
        ):
            self._establish(snap.term)

    def _establish(self, epoch: int) -> None:
        log.info("leadership gained", extra=ctx(epoch=epoch))
        self._epoch = epoch
        self._loop = LeaderLoop(self.settings, self.pool, epoch, self.metrics)
        self._task = asyncio.create_task(self._loop.run(), name=f"leader-{epoch}")
        self.state.leading_epoch = epoch
        self.state.leading_since = time.time()
        self.state.transitions.append((time.time(), "leader", epoch))
        self.metrics.is_leader.set(1)
        self.metrics.epoch.set(epoch)
        self.metrics.leaderships.inc()

    def _reap_task(self) -> None:
        """The loop ended by itself: find out why and decide whether to try again."""
        assert self._task is not None
        exc = self._task.exception() if not self._task.cancelled() else None
        epoch = self._epoch
        if isinstance(exc, Fenced):
            log.warning("leader loop fenced off: %s", exc, extra=ctx(epoch=epoch))
            self.metrics.fenced.inc()
            if epoch is not None:
                self._dead_epochs.add(epoch)
            if exc.current == exc.mine:
                # Another node claimed *our* term (a stale view of Raft elsewhere). Nobody may
                # write under it now; a fresh election gives the cluster a usable epoch.
                log.warning(
                    "epoch taken by another node: handing Raft leadership on",
                    extra=ctx(epoch=epoch),
                )
                asyncio.get_running_loop().run_in_executor(None, self.raft.transfer_leadership)
        elif exc is not None:
            log.error("leader loop crashed: %r", exc, extra=ctx(epoch=epoch))
            self._retry_at = time.monotonic() + 1.0
        self._clear("loop ended")

    async def _revoke(self, why: str) -> None:
        task = self._task
        if task is None:
            return
        await cancel_and_wait([task])  # cancelled or failed; either way it is over
        log.info("leadership revoked: %s", why, extra=ctx(epoch=self._epoch))
        self._clear(why)

    def _clear(self, why: str) -> None:
        if self._epoch is not None:
            self.state.transitions.append((time.time(), f"follower ({why})", self._epoch))
        self._task = None
        self._loop = None
        self.state.leading_epoch = None
        self.state.leading_since = None
        self.metrics.is_leader.set(0)
