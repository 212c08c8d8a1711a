"""The scale benchmark's jobs: a fixed number due every second, the rest hourly or daily.

Pure and deterministic (job ``i`` always gets the same schedule), so a run can top up from
10,000 to 100,000 jobs and the first 10,000 stay the same. ``next_fire_at`` is computed
here with plain arithmetic for these three shapes, because parsing 100,000 distinct cron
expressions would take longer than loading them; a unit test checks it against
:func:`common.schedule.parse_schedule`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from bench.pgsql import BenchJob


def schedule_of(i: int, per_second: int) -> str:
    """Job ``i``: every second if ``i < per_second``, else hourly (even) or daily (odd) at a
    second, minute (and hour) drawn from a generator seeded by ``i``."""
    if i < per_second:
        return "* * * * * *"
    rng = random.Random(i)
    second, minute = rng.randrange(60), rng.randrange(60)
    if i % 2 == 0:
        return f"{second} {minute} * * * *"
    return f"{second} {minute} {rng.randrange(24)} * * *"


def next_fire(schedule: str, now: datetime) -> datetime:
    """First slot strictly after ``now`` (UTC) for a schedule made by :func:`schedule_of`."""
    now = now.astimezone(UTC)
    fields = schedule.split()
    if fields[0] == "*":
        return now.replace(microsecond=0) + timedelta(seconds=1)
    second, minute = int(fields[0]), int(fields[1])
    if fields[2] == "*":
        slot = now.replace(minute=minute, second=second, microsecond=0)
        return slot if slot > now else slot + timedelta(hours=1)
    slot = now.replace(hour=int(fields[2]), minute=minute, second=second, microsecond=0)
    return slot if slot > now else slot + timedelta(days=1)


def jobs(start: int, stop: int, per_second: int, now: datetime) -> Iterator[BenchJob]:
    """Jobs ``start .. stop-1`` of the mix, named ``scale-<i>``."""
    for i in range(start, stop):
        schedule = schedule_of(i, per_second)
        yield BenchJob(f"scale-{i}", schedule, next_fire(schedule, now))
