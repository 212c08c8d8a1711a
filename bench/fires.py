"""Fires of per-second jobs in a window, reduced to rate, misses and lateness (pure).

Both schedulers are judged by this one function, from the same kind of record: which slot
(scheduled time) a fire belongs to and when its process had started. A slot counts as fired
only if its process started; a slot with no record, a ``skipped`` record or a record that
never started is missed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from bench.stats import Summary, summarize


@dataclass(frozen=True)
class Fire:
    """One slot of one job: ``started`` is when its process existed (None: never)."""

    job: str
    slot: float
    started: float | None
    state: str = "succeeded"


@dataclass(frozen=True)
class FireStats:
    jobs: int
    seconds: float
    expected: int
    fired: int
    skipped: int
    late_ms: Summary

    @property
    def missed(self) -> int:
        return self.expected - self.fired

    @property
    def expected_per_s(self) -> float:
        return self.expected / self.seconds if self.seconds else math.nan

    @property
    def fired_per_s(self) -> float:
        return self.fired / self.seconds if self.seconds else math.nan

    @property
    def fired_percent(self) -> float:
        return 100.0 * self.fired / self.expected if self.expected else math.nan


def slots_in(t0: float, t1: float) -> int:
    """Whole-second slots in ``[t0, t1)``."""
    return max(0, math.ceil(t1) - math.ceil(t0))


def analyze(records: Iterable[Fire], jobs: int, t0: float, t1: float) -> FireStats:
    """Reduce the records of ``jobs`` per-second jobs to statistics over ``[t0, t1)``.

    A (job, slot) pair is counted once even if several records name it (neither scheduler
    should produce that; if one did, counting it twice would flatter its rate).
    """
    started: dict[tuple[str, float], float] = {}
    skipped = 0
    for fire in records:
        if not t0 <= fire.slot < t1:
            continue
        if fire.state == "skipped":
            skipped += 1
            continue
        if fire.started is None:
            continue
        key = (fire.job, fire.slot)
        if key not in started or fire.started < started[key]:
            started[key] = fire.started
    lateness = [(start - slot) * 1000.0 for (_, slot), start in started.items()]
    return FireStats(
        jobs=jobs,
        seconds=t1 - t0,
        expected=jobs * slots_in(t0, t1),
        fired=len(started),
        skipped=skipped,
        late_ms=summarize(lateness),
    )
