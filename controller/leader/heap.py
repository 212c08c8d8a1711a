"""The leader's min-heap of next fire times: O(due · log n) per tick, never a table scan."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from common.catchup import CatchupMode
from common.schedule import Schedule, parse_schedule


@lru_cache(maxsize=65536)
def cached_schedule(expr: str, timezone: str) -> Schedule:
    """Jobs sharing an expression share one parsed Schedule."""
    return parse_schedule(expr, timezone)


@dataclass
class HeapJob:
    """What the leader needs to fire one job; ``next_fire_at`` is the persisted value.

    The expression is parsed when the job first fires, not when the heap is loaded: only
    ``next_fire_at`` orders the heap, and a new leader with 100,000 jobs of distinct
    expressions would otherwise spend seconds parsing before it could fire anything.
    """

    job_id: int
    expr: str
    timezone: str
    next_fire_at: datetime
    catchup_window: float
    catchup_mode: CatchupMode = CatchupMode.ALL

    @property
    def schedule(self) -> Schedule:
        """Raises ScheduleError for an expression that does not parse (the API refuses
        those, so only a row written behind its back can have one)."""
        return cached_schedule(self.expr, self.timezone)


class ScheduleHeap:
    """Lazy-deletion heap: replacing or removing a job just orphans its old entry."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []
        self._jobs: dict[int, tuple[int, HeapJob]] = {}
        self._tokens = itertools.count()

    def __len__(self) -> int:
        return len(self._jobs)

    def upsert(self, job: HeapJob) -> None:
        token = next(self._tokens)
        self._jobs[job.job_id] = (token, job)
        heapq.heappush(self._heap, (job.next_fire_at.timestamp(), job.job_id, token))

    def remove(self, job_id: int) -> None:
        self._jobs.pop(job_id, None)

    def get(self, job_id: int) -> HeapJob | None:
        found = self._jobs.get(job_id)
        return found[1] if found else None

    def _drop_stale_top(self) -> None:
        while self._heap:
            _, job_id, token = self._heap[0]
            current = self._jobs.get(job_id)
            if current is not None and current[0] == token:
                return
            heapq.heappop(self._heap)

    def next_due(self) -> float | None:
        """Unix time of the earliest live entry, or None when empty."""
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime, limit: int = 5000) -> list[HeapJob]:
        """Remove and return jobs due at ``now`` (they are re-added after firing)."""
        now_ts = now.timestamp()
        due: list[HeapJob] = []
        while len(due) < limit:
            self._drop_stale_top()
            if not self._heap or self._heap[0][0] > now_ts:
                break
            _, job_id, _ = heapq.heappop(self._heap)
            _, job = self._jobs.pop(job_id)
            due.append(job)
        return due

    def clear(self) -> None:
        self._heap.clear()
        self._jobs.clear()
