"""What to do with slots that became due: fire them, fire them late, or skip them.

Why a pure function: the leader calls this for every due job on every tick, after
failovers and after outages of any length, and its answer is written to PostgreSQL as one
run row per slot. The rules must therefore be exact, bounded in cost, and testable with an
injected ``now`` (Kubernetes' CronJob controller does the same with
``mostRecentScheduleTime``).

For each slot ``s`` with ``next_fire_at <= s <= now`` (age = ``now - s``):

* ``age <= on_time_grace``: **fire** (on time; the grace absorbs tick jitter).
* otherwise the slot was *missed*:
    * ``age > catchup_window``: **skip**, reason ``missed: older than catchup_window 60s``.
    * inside the window, by ``mode``:
        * ``all``: every missed slot is **late** (runs now, flagged as catch-up);
        * ``latest``: only the newest missed slot is **late**, the others are skipped with
          ``missed: catchup=latest`` (one catch-up run, however long the outage);
        * ``none``: **skip** with ``missed: catchup=none``.

At most ``max_decisions`` decisions are returned: the NEWEST ones. Older slots are only
counted in ``omitted_skips``. They are effectively skipped even in the rare case (a huge
window with mode ``all``) where they would otherwise have been ``late``: after an outage
that long, replaying more than ``max_decisions`` runs of one job is never what anyone
wants, and it keeps the work and the database write per tick bounded. The cost does not
grow with the number of slots: the schedule counts slots per day and jumps to the kept
range (see ``Schedule.count_between`` / ``Schedule.last_slots_between``), so a job firing
every second that was down for 30 days is planned in well under a second.

The same window is also a **starting deadline** (:func:`start_deadline_missed`): a slot's run
that is still pending when it is older than ``max(catchup_window, on_time_grace)`` is
skipped instead of started, whatever kept it waiting (a busy fleet, a concurrency cap, an
overlap buffer). A slot that late would have been skipped had the leader been down, and
without the deadline an overloaded fleet queues without bound: every new slot lands behind
a backlog that only grows, until nothing starts on time at all (Kubernetes'
``startingDeadlineSeconds`` and Quartz's misfire threshold exist for the same reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from common.durations import format_duration
from common.schedule import Schedule

__all__ = [
    "ON_TIME_GRACE",
    "CatchupMode",
    "DuePlan",
    "SlotDecision",
    "plan_due",
    "start_deadline_missed",
]

ON_TIME_GRACE = 2.0
"""Seconds a slot may be late and still count as on time: absorbs tick and dispatch jitter."""
DEADLINE_TRIGGERS = frozenset({"schedule", "catchup"})
"""Runs that exist because a slot came due. Manual, backfill and DAG runs were asked for
explicitly and wait however long it takes."""


class CatchupMode(StrEnum):
    """How missed slots inside the catch-up window are replayed."""

    ALL = "all"
    LATEST = "latest"
    NONE = "none"


@dataclass(frozen=True)
class SlotDecision:
    """One slot and what to do with it; ``reason`` explains every skip and every late run."""

    slot: datetime
    action: Literal["fire", "late", "skip"]
    reason: str | None = None


@dataclass(frozen=True)
class DuePlan:
    """Decisions for the due slots (oldest first) and where the job's schedule goes next."""

    decisions: list[SlotDecision]
    next_fire_at: datetime
    omitted_skips: int = 0


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
    return float(value)


def _aware(name: str, value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: must be a timezone-aware datetime, got {value!r}")
    return value


def plan_due(
    schedule: Schedule,
    next_fire_at: datetime,
    now: datetime,
    catchup_window: float,
    mode: CatchupMode = CatchupMode.ALL,
    on_time_grace: float = ON_TIME_GRACE,
    max_decisions: int = 10_000,
) -> DuePlan:
    """Decide every slot in ``[next_fire_at, now]``; see the module docstring for the rules.

    ``next_fire_at`` is the job's stored next slot (it need not be a slot itself, e.g. after
    the schedule was edited: the first slot at or after it is considered). The returned
    ``next_fire_at`` is the first slot strictly after ``now``; when nothing is due the input
    is returned unchanged and there are no decisions.
    """
    _aware("next_fire_at", next_fire_at)
    _aware("now", now)
    window = _seconds("catchup_window", catchup_window)
    grace = _seconds("on_time_grace", on_time_grace)
    mode = CatchupMode(mode)
    if isinstance(max_decisions, bool) or not isinstance(max_decisions, int) or max_decisions < 1:
        raise ValueError(f"max_decisions: must be an integer >= 1, got {max_decisions!r}")
    if next_fire_at > now:
        return DuePlan(decisions=[], next_fire_at=next_fire_at, omitted_skips=0)
    after = schedule.next_after(next_fire_at)
    if after > now:
        # The tick's common case: at most the stored slot itself is due. Answered with two
        # schedule lookups instead of five (a job firing every second is planned every
        # second, and this is most of the tick's Python time at thousands due per second).
        due = schedule.slots_between(next_fire_at, next_fire_at, 1)
        if not due:
            return DuePlan(decisions=[], next_fire_at=after, omitted_skips=0)
        if (now - due[0]).total_seconds() <= grace:
            return DuePlan([SlotDecision(due[0], "fire")], next_fire_at=after, omitted_skips=0)
    return _plan_missed(schedule, next_fire_at, now, window, grace, mode, max_decisions)


def _plan_missed(
    schedule: Schedule,
    next_fire_at: datetime,
    now: datetime,
    window: float,
    grace: float,
    mode: CatchupMode,
    max_decisions: int,
) -> DuePlan:
    """The general case of :func:`plan_due` (arguments already checked): any number of
    slots due, some of them missed."""
    total = schedule.count_between(next_fire_at, now)
    if total <= max_decisions:
        slots = schedule.slots_between(next_fire_at, now, max_decisions)
    else:
        slots = schedule.last_slots_between(next_fire_at, now, max_decisions)
    ages = [(now - slot).total_seconds() for slot in slots]

    # The one slot that "latest" replays: the newest missed slot still inside the window.
    newest_missed = None
    for slot, age in zip(reversed(slots), reversed(ages), strict=True):
        if grace < age <= window:
            newest_missed = slot
            break

    too_old = f"missed: older than catchup_window {format_duration(window)}"
    decisions: list[SlotDecision] = []
    for slot, age in zip(slots, ages, strict=True):
        if age <= grace:
            decisions.append(SlotDecision(slot, "fire"))
        elif age > window:
            decisions.append(SlotDecision(slot, "skip", too_old))
        elif mode is CatchupMode.ALL or (mode is CatchupMode.LATEST and slot == newest_missed):
            decisions.append(SlotDecision(slot, "late", f"late by {format_duration(age)}"))
        else:
            decisions.append(SlotDecision(slot, "skip", f"missed: catchup={mode.value}"))
    return DuePlan(
        decisions=decisions,
        next_fire_at=schedule.next_after(now),
        omitted_skips=total - len(slots),
    )


def start_deadline_missed(
    trigger: str,
    attempt: int,
    slot: datetime,
    now: datetime,
    catchup_window: float,
    on_time_grace: float = ON_TIME_GRACE,
) -> str | None:
    """Why a pending run must be skipped rather than started now, or None if it may start.

    Only a slot's first attempt has the deadline: a retry is late by its backoff on purpose.
    """
    if trigger not in DEADLINE_TRIGGERS or attempt != 1:
        return None
    deadline = max(
        _seconds("catchup_window", catchup_window), _seconds("on_time_grace", on_time_grace)
    )
    if (_aware("now", now) - _aware("slot", slot)).total_seconds() <= deadline:
        return None
    return f"missed: not started within catchup_window {format_duration(deadline)}"
