"""Overlap and concurrency decisions at dispatch time. Pure: no I/O, no clock.

The dispatcher calls :func:`decide` for each job with pending runs, inside the fenced
transaction that also reads the job's active runs from PostgreSQL. Deciding there, and not
from memory, is what keeps ``skip`` (Kubernetes' ``Forbid``) true across a leader change:
a new leader catching up sees the run the old leader started and skips instead of starting
a second one.

Per policy, while the job has an active (dispatched or running) run:

* ``allow``: start pending runs, up to ``max_concurrency`` active at once (0 = no limit).
* ``skip``: every pending run is recorded ``skipped`` ("overlap=skip: …").
* ``buffer_all``: pending runs wait and start one at a time, oldest slot first.
* ``buffer_one``: only the newest pending run waits; older ones are ``skipped``
  ("overlap=buffer_one: …") and counted as buffer-dropped.
* ``cancel_other``: the active runs are asked to cancel and the newest pending run starts;
  older pending runs are skipped as superseded.

With no active run, non-``allow`` policies start the oldest pending run (``skip`` and
``cancel_other`` first drop older ones as above) and keep the rest for the next pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.states import OverlapPolicy


@dataclass(frozen=True)
class PendingRun:
    run_id: int
    slot_key: float  # scheduled_for as a sortable number


@dataclass
class OverlapDecision:
    start: list[int] = field(default_factory=list)
    wait: list[int] = field(default_factory=list)
    skip: list[tuple[int, str]] = field(default_factory=list)  # (run_id, reason)
    cancel_active: bool = False
    dropped_by_buffer: int = 0
    skipped_by_overlap: int = 0


def decide(
    policy: OverlapPolicy,
    pending: list[PendingRun],
    active: int,
    max_concurrency: int = 0,
) -> OverlapDecision:
    """Split a job's pending runs into start / wait / skip, given its active run count."""
    runs = sorted(pending, key=lambda r: (r.slot_key, r.run_id))
    out = OverlapDecision()
    if not runs:
        return out
    if policy is OverlapPolicy.ALLOW:
        room = len(runs) if max_concurrency <= 0 else max(0, max_concurrency - active)
        out.start = [r.run_id for r in runs[:room]]
        out.wait = [r.run_id for r in runs[room:]]
        return out
    if policy is OverlapPolicy.SKIP:
        if active:
            out.skip = [(r.run_id, "overlap=skip: an earlier run is still active") for r in runs]
            out.skipped_by_overlap = len(runs)
        else:
            out.start = [runs[0].run_id]
            out.skip = [
                (r.run_id, "overlap=skip: an earlier run is still active") for r in runs[1:]
            ]
            out.skipped_by_overlap = len(runs) - 1
        return out
    if policy is OverlapPolicy.BUFFER_ALL:
        if active:
            out.wait = [r.run_id for r in runs]
        else:
            out.start = [runs[0].run_id]
            out.wait = [r.run_id for r in runs[1:]]
        return out
    if policy is OverlapPolicy.BUFFER_ONE:
        if active:
            keep, older = runs[-1:], runs[:-1]
            out.wait = [r.run_id for r in keep]
        else:
            keep, older = runs[:1], runs[1:-1]
            out.start = [runs[0].run_id]
            out.wait = [r.run_id for r in runs[1:][-1:]]
        reason = "overlap=buffer_one: a newer slot replaced this one in the buffer"
        out.skip = [(r.run_id, reason) for r in older]
        out.dropped_by_buffer = len(older)
        return out
    # CANCEL_OTHER: the newest slot wins; everything older gives way.
    newest, older = runs[-1], runs[:-1]
    out.cancel_active = active > 0
    out.start = [newest.run_id]
    out.skip = [(r.run_id, "overlap=cancel_other: superseded by a newer slot") for r in older]
    out.skipped_by_overlap = len(older)
    return out
