"""The one seam between Raft and the leader loop (establish / revoke leadership).

Nothing else asks "am I leader?": this manager watches the Raft node, starts a
:class:`LeaderLoop` for each new term it wins and cancels it the moment the term is lost.
A loop that ends with :class:`Fenced` is not restarted for the same term.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from common.errors import Fenced
from common.logging import ctx
from common.settings import Settings
from controller.leader.loop import LeaderLoop
from controller.metrics import ControllerMetrics
from controller.raft import RaftNode, RaftSnapshot

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02


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

    @property
    def loop(self) -> LeaderLoop | None:
        return self._loop

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
        elif exc is not None:
            log.error("leader loop crashed: %r", exc, extra=ctx(epoch=epoch))
            self._retry_at = time.monotonic() + 1.0
        self._clear("loop ended")

    async def _revoke(self, why: str) -> None:
        task = self._task
        if task is None:
            return
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001 - cancelled or failed; either way it is over
                pass
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
