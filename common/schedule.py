"""When a job fires: cron expressions and ``@every`` intervals evaluated in an IANA time zone.

Why this is pure arithmetic with ``now`` passed in: two leaders (before and after a
failover) must compute *identical* slot instants, because the database deduplicates runs on
``(job, scheduled_for)``. Anything that depends on when or where the code runs would let a
failover fire a slot twice or not at all. Tests drive it with explicit instants, never a
clock.

Accepted syntax
    * 5-field cron ``minute hour day-of-month month day-of-week``.
    * 6-field cron whose FIRST field is seconds: ``*/10 * * * * *``. (croniter's default
      reads a 6th field as seconds-*last*; we always pass ``second_at_beginning=True``.)
    * Names (``JAN``, ``MON``), lists, ranges, steps, ``?``, and croniter's ``L``
      (last day of month / ``L5`` last Friday), ``W`` (nearest weekday) and ``#``
      (``FRI#2``). Day-of-month and day-of-week both restricted means "either" (Vixie cron).
    * Macros ``@yearly @annually @monthly @weekly @daily @midnight @hourly @minutely
      @secondly``.
    * ``@every <duration>`` (``5s``, ``90s``, ``1m30s``, ``2h``, ``1d``): whole seconds, at
      least 1s, at most 366 days. Slots are multiples of the interval since the Unix epoch,
      so they do not depend on the time zone, on when the job was created, or on which
      leader computes them.
    * Refused: 7 fields (years), croniter's ``H``/``R`` (hashed or *random* values: two
      leaders would disagree), and expressions that can never fire (``0 0 30 2 *``).

Daylight-saving time (product decisions)
    a. Absolute time for ``@every`` and for cron whose hour field is ``*`` (every hour,
       e.g. ``*/5 * * * *``, ``*/10 * * * * *``, ``30 * * * *``, ``@hourly``): an instant
       fires when its local wall-clock reading matches the fields. In the fall-back night
       the repeated hour fires in both passes (an hourly job still fires every hour, no gap
       and no burst); in the spring-forward night the skipped local hour simply has no
       instants, so nothing is missing or doubled in absolute time.
    b. Wall clock for every other cron (a fixed set of hours: ``30 2 * * *``, ``@daily``):
       a wall-clock slot that does not exist (spring forward) fires once at the first
       instant after the gap (``30 2 * * *`` on 2026-03-08 in New York fires at 03:00 EDT =
       07:00 UTC); all non-existent slots of one gap, and a real slot at the gap's end,
       collapse into that single fire. A wall-clock slot that occurs twice (fall back)
       fires once, at its first occurrence (``fold=0``): a daily backup runs once a day.
    c. ``next_after`` is strictly increasing, never returns the same instant twice in
       succession, and every search is bounded (an impossible search raises
       ``ScheduleError`` instead of spinning).

Why not let croniter iterate: croniter (7.0) is used to *parse and validate* expressions,
but its iteration with aware datetimes fires a ``30 1 * * *`` job twice in the fall-back
night and costs ~75 us per step. The evaluator here works on integer seconds: the matching
days, a sorted set of times of day per day, and the zone's offset transitions (found once
per zone and year and cached), so ``next_after`` costs a few microseconds and slot counting
over long outages (catch-up) is proportional to days, not slots.

Supported instants are years 1900..9989; everything is computed in whole seconds.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from common.durations import DurationError, format_duration, parse_duration

__all__ = ["Schedule", "ScheduleError", "parse_schedule"]


class _Exhausted(Exception):
    """No slot before the end of the supported range (converted to ScheduleError)."""


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used.

    The message starts with ``schedule:`` or ``timezone:`` so the API can attach it to the
    right input field, and then says exactly what is wrong.
    """

    code = "invalid_schedule"


# ----------------------------------------------------------------------------- constants

_DAY = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ONE_SECOND = timedelta(seconds=1)
_MIN_TS = (date(1900, 1, 1).toordinal() - _EPOCH_ORDINAL) * _DAY
_MAX_TS = (date(9990, 1, 1).toordinal() - _EPOCH_ORDINAL) * _DAY
_MAX_DAY = _MAX_TS // _DAY
# The Gregorian calendar repeats every 400 years: a day pattern that matches nothing in
# that span matches nothing ever.
_CALENDAR_CYCLE_DAYS = 146_097
_MAX_SEGMENTS = 10_000  # offset changes crossed by one search (two a year in DST zones)
_SAMPLE_SECONDS = 6 * 3600  # offsets are sampled this often to find transitions

_MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
    "@minutely": "* * * * *",
    "@secondly": "* * * * * *",
}
_EVERY_MAX_SECONDS = 366 * _DAY
_HOST_DEPENDENT_ZONES = frozenset({"localtime", "posixrules"})

_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_ALLOWED = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L or nW",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT, with optional L or #n",
}
_TOKEN_RE = re.compile(r"[0-9A-Za-z*?/,#-]+", re.ASCII)
_HASHED_RE = re.compile(r"[hr](?:\(\d+-\d+\))?(?:/\d+)?", re.ASCII | re.IGNORECASE)
_NEAREST_WEEKDAY_RE = re.compile(r"\d+w|w\d+", re.ASCII | re.IGNORECASE)


# ------------------------------------------------------------------- instants and offsets


def _floor_ts(moment: datetime, name: str) -> int:
    """Whole seconds since the epoch, rounded down, for an aware datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name}: must be a timezone-aware datetime, got {moment!r}")
    ts = (moment - _EPOCH) // _ONE_SECOND
    if not _MIN_TS <= ts <= _MAX_TS:
        raise ValueError(f"{name}: must be between 1900 and 9989, got {moment.isoformat()}")
    return ts


def _ceil_ts(moment: datetime, name: str) -> int:
    ts = _floor_ts(moment, name)
    return ts if moment.microsecond == 0 else ts + 1


def _to_datetime(ts: int) -> datetime:
    return _EPOCH + timedelta(seconds=ts)


def _year_of(ts: int) -> int:
    return date.fromordinal(ts // _DAY + _EPOCH_ORDINAL).year


def _year_start(year: int) -> int:
    return (date(year, 1, 1).toordinal() - _EPOCH_ORDINAL) * _DAY


def _offset(tz: ZoneInfo, ts: int) -> int:
    """UTC offset in seconds in force at instant ``ts``."""
    offset = datetime.fromtimestamp(ts, tz).utcoffset()
    assert offset is not None
    return offset // _ONE_SECOND


def _bisect_change(tz: ZoneInfo, lo: int, hi: int, before: int) -> int:
    """First instant in ``(lo, hi]`` whose offset differs from ``before`` (one change there)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(tz, mid) == before:
            lo = mid
        else:
            hi = mid
    return hi


@lru_cache(maxsize=8192)
def _year_transitions(tz: ZoneInfo, year: int) -> tuple[tuple[int, int, int], ...]:
    """``(instant, offset_before, offset_after)`` for every offset change in a UTC year.

    zoneinfo has no public transition list, so offsets are sampled every few hours and each
    change is pinned to the second by bisection. Computed once per zone and year (about a
    millisecond) and cached. A change that is undone within one sampling step would be
    missed; tzdata has none in the supported years.
    """
    end = _year_start(year + 1) - 1
    lo = _year_start(year) - 1
    before = _offset(tz, lo)
    found: list[tuple[int, int, int]] = []
    while lo < end:
        hi = min(lo + _SAMPLE_SECONDS, end)
        offset = _offset(tz, hi)
        if offset == before:
            lo = hi
            continue
        instant = _bisect_change(tz, lo, hi, before)
        after = _offset(tz, instant)
        found.append((instant, before, after))
        lo, before = instant, after
    return tuple(found)


def _transitions(tz: ZoneInfo, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """Offset changes at instants in ``(lo, hi]``, oldest first."""
    if hi <= lo:
        return []
    out: list[tuple[int, int, int]] = []
    for year in range(_year_of(lo + 1), _year_of(hi) + 1):
        out.extend(t for t in _year_transitions(tz, year) if lo < t[0] <= hi)
    return out


def _first_transition(tz: ZoneInfo, lo: int, hi: int) -> tuple[int, int, int] | None:
    """The earliest offset change in ``(lo, hi]``, or None."""
    if hi <= lo:
        return None
    for year in range(_year_of(lo + 1), _year_of(hi) + 1):
        for transition in _year_transitions(tz, year):
            if transition[0] > hi:
                return None
            if transition[0] > lo:
                return transition
    return None


# ------------------------------------------------------------------------- day matching


@lru_cache(maxsize=65_536)
def _croniter_next_day(day_expr: str, day: int) -> int | None:
    """First epoch day >= ``day`` matching a day-only cron (for ``L``, ``W`` and ``#``)."""
    start = _EPOCH_NAIVE + timedelta(days=day, minutes=-1)
    try:
        found = croniter(day_expr, start).get_next(datetime)
    except CroniterBadDateError:
        return None
    return found.toordinal() - _EPOCH_ORDINAL


@dataclass(frozen=True, slots=True)
class _Days:
    """Which local calendar days a cron expression fires on.

    Plain numbers, ranges, names and ``L`` in day-of-month are evaluated natively (fast).
    Expressions using ``W``, ``#`` or ``L`` in day-of-week are delegated to croniter with a
    day-only expression, whose answers are cached per day.
    """

    months: frozenset[int] | None
    dom: frozenset[int] | None
    last_dom: bool
    dow: frozenset[int] | None
    either: bool  # both day fields restricted: a day matches if either does (Vixie cron)
    delegate: str | None  # day-only cron expression handed to croniter
    every_day: bool = False

    def matches(self, day: int) -> bool:
        if self.every_day:
            return True
        if self.delegate is not None:
            return _croniter_next_day(self.delegate, day) == day
        return self._matches_date(date.fromordinal(day + _EPOCH_ORDINAL))

    def _matches_date(self, d: date) -> bool:
        if self.months is not None and d.month not in self.months:
            return False
        dom_ok = self.dom is None or d.day in self.dom or (self.last_dom and _is_last_day(d))
        dow_ok = self.dow is None or (d.weekday() + 1) % 7 in self.dow
        return (dom_ok or dow_ok) if self.either else (dom_ok and dow_ok)

    def next_match(self, day: int) -> int | None:
        """First matching epoch day >= ``day`` (searching at most one calendar cycle)."""
        limit = min(day + _CALENDAR_CYCLE_DAYS, _MAX_DAY)
        if day > limit:
            return None
        if self.delegate is not None:
            found = _croniter_next_day(self.delegate, day)
            return found if found is not None and found <= limit else None
        d = date.fromordinal(day + _EPOCH_ORDINAL)
        end = date.fromordinal(limit + _EPOCH_ORDINAL)
        while d <= end:
            if self.months is not None and d.month not in self.months:
                d = date(d.year + 1, 1, 1) if d.month == 12 else date(d.year, d.month + 1, 1)
                continue
            if self._matches_date(d):
                return d.toordinal() - _EPOCH_ORDINAL
            d += timedelta(days=1)
        return None

    def count(self, first: int, stop: int) -> int:
        """Matching days in ``[first, stop)``."""
        n = 0
        day = self.next_match(first) if first < stop else None
        while day is not None and day < stop:
            n += 1
            day = self.next_match(day + 1)
        return n


def _is_last_day(d: date) -> bool:
    return (d + timedelta(days=1)).day == 1


# ------------------------------------------------------------------------- time of day


@dataclass(frozen=True, slots=True)
class _Times:
    """The matching times of day: every combination of the hour, minute and second sets.

    Kept as three sorted tuples rather than a list of up to 86,400 seconds so that memory is
    tiny and "next time of day" / "how many times of day before t" are a few bisections.
    """

    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    seconds: tuple[int, ...]

    @property
    def per_day(self) -> int:
        return len(self.hours) * len(self.minutes) * len(self.seconds)

    @property
    def first(self) -> int:
        return self.hours[0] * 3600 + self.minutes[0] * 60 + self.seconds[0]

    def matches(self, tod: int) -> bool:
        h, rest = divmod(tod, 3600)
        m, s = divmod(rest, 60)
        return (
            _contains(self.hours, h) and _contains(self.minutes, m) and _contains(self.seconds, s)
        )

    def next_at_or_after(self, tod: int) -> int | None:
        """First matching second of the day >= ``tod``, or None if none is left today."""
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        h, rest = divmod(tod, 3600)
        m, s = divmod(rest, 60)
        i = bisect_left(hours, h)
        if i < len(hours) and hours[i] == h:
            j = bisect_left(minutes, m)
            if j < len(minutes) and minutes[j] == m:
                k = bisect_left(seconds, s)
                if k < len(seconds):
                    return h * 3600 + m * 60 + seconds[k]
                j += 1
            if j < len(minutes):
                return h * 3600 + minutes[j] * 60 + seconds[0]
            i += 1
        if i < len(hours):
            return hours[i] * 3600 + minutes[0] * 60 + seconds[0]
        return None

    def rank(self, tod: int) -> int:
        """How many matching seconds of the day lie before ``tod`` (0..86400)."""
        h, rest = divmod(tod, 3600)
        m, s = divmod(rest, 60)
        i = bisect_left(self.hours, h)
        n = i * len(self.minutes) * len(self.seconds)
        if i < len(self.hours) and self.hours[i] == h:
            j = bisect_left(self.minutes, m)
            n += j * len(self.seconds)
            if j < len(self.minutes) and self.minutes[j] == m:
                n += bisect_left(self.seconds, s)
        return n


def _contains(values: tuple[int, ...], x: int) -> bool:
    i = bisect_left(values, x)
    return i < len(values) and values[i] == x


# ------------------------------------------------------------------------ the evaluators


@dataclass(frozen=True, slots=True)
class _Every:
    """``@every N``: multiples of N seconds since the epoch, whatever the time zone."""

    seconds: int

    def first_at_or_after(self, ts: int) -> int:
        return -(-ts // self.seconds) * self.seconds

    def count(self, first: int, last: int) -> int:
        """Slots in ``[first, last]``."""
        return max(0, last // self.seconds - (-(-first // self.seconds)) + 1)


@dataclass(frozen=True, slots=True)
class _Cron:
    """A parsed cron expression bound to a zone. Walls are local seconds since 1970-01-01."""

    days: _Days
    times: _Times
    tz: ZoneInfo
    wall_clock: bool  # rule b (fixed hours) vs rule a (hour field is '*')

    # --- walls (local wall-clock seconds; pure calendar arithmetic, no zone involved)

    def _wall_matches(self, wall: int) -> bool:
        day, tod = divmod(wall, _DAY)
        return self.times.matches(tod) and self.days.matches(day)

    def _next_wall(self, wall: int) -> int:
        """First matching wall >= ``wall``."""
        day, tod = divmod(wall, _DAY)
        if self.days.matches(day):
            found = self.times.next_at_or_after(tod)
            if found is not None:
                return day * _DAY + found
        next_day = self.days.next_match(day + 1)
        if next_day is None:
            raise _Exhausted
        return next_day * _DAY + self.times.first

    def _count_walls(self, first: int, stop: int) -> int:
        """Matching walls in ``[first, stop)``."""
        if stop <= first:
            return 0
        d1, t1 = divmod(first, _DAY)
        d2, t2 = divmod(stop, _DAY)
        rank = self.times.rank
        if d1 == d2:
            return rank(t2) - rank(t1) if self.days.matches(d1) else 0
        n = self.times.per_day * self.days.count(d1 + 1, d2)
        if self.days.matches(d1):
            n += self.times.per_day - rank(t1)
        if t2 and self.days.matches(d2):
            n += rank(t2)
        return n

    # --- instants

    def first_at_or_after(self, ts: int) -> int:
        if self.wall_clock:
            return self._first_wall_clock(ts)
        return self._first_absolute(ts)

    def _first_absolute(self, ts: int) -> int:
        """Rule a: the first instant >= ``ts`` whose local reading matches.

        Within a stretch of constant offset, instants and walls move together, so the answer
        is the next matching wall, unless an offset change comes first, in which case the
        search restarts at the change with the new offset.
        """
        start = ts
        for _ in range(_MAX_SEGMENTS):
            offset = _offset(self.tz, start)
            candidate = self._next_wall(start + offset) - offset
            change = _first_transition(self.tz, start, candidate)
            if change is None:
                return candidate
            start = change[0]
        raise _Exhausted

    def _first_wall_clock(self, ts: int) -> int:
        """Rule b: the first slot >= ``ts``, slots being wall times mapped to instants.

        The mapping wall -> instant (first occurrence; the end of the gap for a non-existent
        wall) never decreases, so we start from the wall reading of ``ts``, adjusted for the
        two places where that reading is not the right starting point.
        """
        local = datetime.fromtimestamp(ts, self.tz)
        wall = ts + local.utcoffset() // _ONE_SECOND  # type: ignore[operator]
        if local.fold:
            # ts is in the second pass of a repeated hour: every wall of that hour already
            # had its (only) slot in the first pass, so continue after the repeated walls.
            changes = _transitions(self.tz, ts - _DAY, ts)
            if changes:
                wall = changes[-1][0] + changes[-1][1]
        else:
            change = _first_transition(self.tz, ts - 1, ts)
            if change is not None and change[2] > change[1]:
                # ts is exactly the end of a spring-forward gap, where the gap's
                # non-existent walls fire: include them.
                wall = ts + change[1]
        return self._instant_of_wall(self._next_wall(wall))

    def _instant_of_wall(self, wall: int) -> int:
        naive = _EPOCH_NAIVE + timedelta(seconds=wall)
        first = naive.replace(tzinfo=self.tz).utcoffset()
        second = naive.replace(tzinfo=self.tz, fold=1).utcoffset()
        assert first is not None and second is not None
        before, after = first // _ONE_SECOND, second // _ONE_SECOND
        if before >= after:  # unique wall, or repeated one: its first occurrence
            return wall - before
        # Non-existent wall (fold=0 reads it with the pre-gap offset): the gap's end.
        return _bisect_change(self.tz, wall - after, wall - before, before)

    def count(self, first: int, last: int) -> int:
        """Slots in ``[first, last]``."""
        if last < first:
            return 0
        total = 0
        start = first
        for change, _, _ in _transitions(self.tz, first, last):
            offset = _offset(self.tz, start)
            total += self._count_walls(start + offset, change + offset)
            start = change
        offset = _offset(self.tz, start)
        total += self._count_walls(start + offset, last + 1 + offset)
        if not self.wall_clock:
            return total
        # Rule b differs from the absolute count only around offset changes.
        for change, before, after in _transitions(self.tz, first - _DAY, last):
            if after < before:
                # Fall back: the second pass over walls [change+after, change+before) does
                # not fire under rule b; remove what the absolute count took from it.
                lo, hi = max(first, change), min(last + 1, change + before - after)
                total -= self._count_walls(lo + after, hi + after)
            elif first <= change <= last and not self._wall_matches(change + after):
                # Spring forward: the gap's walls fire once, at the change, unless the wall
                # at the gap's end fires there anyway (already counted above).
                if self._count_walls(change + before, change + after):
                    total += 1
        return total


# ----------------------------------------------------------------------------- parsing


def _schedule_error(expr: str, reason: str) -> ScheduleError:
    return ScheduleError(f"schedule: {expr!r} is not a valid cron expression: {reason}")


@lru_cache(maxsize=8192)
def _field_problem(name: str, token: str) -> str | None:
    """Why a single field is invalid, or None; checks the field on its own so the message
    can name it.

    Cached: the same few tokens (``*``, ``0``, ``*/5``, ...) recur across thousands of jobs,
    and each check is a croniter expansion; a leader loading 100,000 jobs parses them all.
    """
    if any(_HASHED_RE.fullmatch(part) for part in token.split(",")):
        return (
            f"{name} field {token!r} uses H/R (hashed/random) values, which are not "
            "supported: every leader must compute the same fire times"
        )
    if _TOKEN_RE.fullmatch(token) is None:
        return f"{name} field {token!r} contains characters that are not allowed"
    probe = ["*"] * 6
    probe[_FIELDS.index(name)] = token
    try:
        croniter.expand(" ".join(probe), second_at_beginning=True)
    except (CroniterError, ValueError, TypeError, KeyError, IndexError):
        return f"{name} field {token!r} is invalid or out of range (allowed: {_ALLOWED[name]})"
    return None


def _expand_cron(expr: str, fields: list[str]) -> tuple[list[list], dict]:
    if len(fields) not in (5, 6):
        raise ScheduleError(
            f"schedule: {expr!r} has {len(fields)} field{'s' if len(fields) > 1 else ''}; "
            "expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 (second first)"
        )
    named = list(zip(_FIELDS if len(fields) == 6 else _FIELDS[1:], fields, strict=True))
    for name, token in named:
        problem = _field_problem(name, token)
        if problem:
            raise _schedule_error(expr, problem)
    six = fields if len(fields) == 6 else ["0", *fields]
    try:
        expanded, nth = croniter.expand(" ".join(six), second_at_beginning=True)
    except (CroniterError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise _schedule_error(expr, str(exc)) from None
    return expanded, nth


def _values(expanded: list, low: int, high: int) -> tuple[int, ...]:
    if expanded == ["*"]:
        return tuple(range(low, high + 1))
    return tuple(sorted({int(v) for v in expanded}))


def _compile_cron(expr: str, fields: list[str], tz: ZoneInfo) -> _Cron:
    expanded, nth = _expand_cron(expr, fields)
    minute, hour, dom, month, dow, second = expanded
    dom_token, month_token, dow_token = fields[-3:]
    delegate = None
    if nth or _NEAREST_WEEKDAY_RE.search(dom_token):
        delegate = f"0 0 {dom_token} {month_token} {dow_token}"
    dom_set = None if dom == ["*"] else frozenset(v for v in dom if v != "l")
    days = _Days(
        months=None if month == ["*"] else frozenset(month),
        dom=dom_set,
        last_dom="l" in dom,
        dow=None if dow == ["*"] else frozenset(dow),
        either=dom != ["*"] and dow != ["*"],
        delegate=delegate,
        every_day=delegate is None and dom == month == dow == ["*"],
    )
    times = _Times(
        hours=_values(hour, 0, 23),
        minutes=_values(minute, 0, 59),
        seconds=_values(second, 0, 59),
    )
    # Can it ever fire? Months x day patterns repeat every 400 years.
    reference = date(2000, 1, 1).toordinal() - _EPOCH_ORDINAL
    try:
        probe = days.next_match(reference)
    except (CroniterError, ValueError) as exc:
        raise _schedule_error(expr, str(exc)) from None
    if probe is None:
        raise ScheduleError(f"schedule: {expr!r} never fires (no calendar day matches)")
    return _Cron(days=days, times=times, tz=tz, wall_clock=hour != ["*"])


def _compile_every(expr: str, rest: str) -> _Every:
    if not rest:
        raise ScheduleError(f"schedule: {expr!r} needs an interval, e.g. '@every 5m'")
    try:
        seconds = parse_duration(rest, "@every")
    except DurationError as exc:
        raise ScheduleError(f"schedule: {expr!r} has an invalid interval ({exc})") from None
    if seconds < 1:
        raise ScheduleError(
            f"schedule: {expr!r} interval must be at least 1s, got {format_duration(seconds)}"
        )
    if not seconds.is_integer():
        raise ScheduleError(f"schedule: {expr!r} interval must be a whole number of seconds")
    if seconds > _EVERY_MAX_SECONDS:
        raise ScheduleError(f"schedule: {expr!r} interval must be at most 366d")
    return _Every(int(seconds))


def _load_zone(name: object) -> ZoneInfo:
    if not isinstance(name, str):
        raise ScheduleError(f"timezone: must be a string, got {type(name).__name__}")
    if not name.strip():
        raise ScheduleError("timezone: must not be empty")
    if name in _HOST_DEPENDENT_ZONES:
        raise ScheduleError(f"timezone: {name!r} depends on the host; use an IANA name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"timezone: unknown time zone {name!r}") from None


@lru_cache(maxsize=16_384)
def _compile(expr: str, timezone: str) -> _Cron | _Every:
    """Parse once per (expression, zone); the leader shares one evaluator between jobs."""
    if not expr:
        raise ScheduleError("schedule: must not be empty")
    zone = _load_zone(timezone)
    head, _, rest = expr.partition(" ")
    keyword = head.lower()
    if keyword == "@every":
        return _compile_every(expr, rest.strip())
    if keyword.startswith("@"):
        if rest or keyword not in _MACROS:
            known = " ".join(_MACROS) + " @every"
            raise ScheduleError(f"schedule: unknown macro {expr!r} (expected one of {known})")
        return _compile_cron(expr, _MACROS[keyword].split(), zone)
    return _compile_cron(expr, expr.split(" "), zone)


# ---------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Schedule:
    """A validated schedule; construct it with ``parse_schedule``.

    ``expr`` is the expression with whitespace normalised (single spaces). ``interval_seconds``
    is set for ``@every``. ``follows_wall_clock`` says which DST rule applies (see the module
    docstring): True for fixed-hour cron, False for ``@every`` and every-hour cron.
    """

    expr: str
    timezone: str = "UTC"
    interval_seconds: int | None = field(init=False, default=None)
    follows_wall_clock: bool = field(init=False, default=False)
    _engine: _Cron | _Every = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expr, str):
            raise ScheduleError(f"schedule: must be a string, got {type(self.expr).__name__}")
        normalised = " ".join(self.expr.split())
        if not isinstance(self.timezone, str):
            _load_zone(self.timezone)  # raises the "timezone: must be a string" error
        engine = _compile(normalised, self.timezone)
        object.__setattr__(self, "expr", normalised)
        object.__setattr__(self, "_engine", engine)
        if isinstance(engine, _Every):
            object.__setattr__(self, "interval_seconds", engine.seconds)
        else:
            object.__setattr__(self, "follows_wall_clock", engine.wall_clock)

    def _first_at_or_after(self, ts: int) -> int:
        try:
            found = self._engine.first_at_or_after(ts)
        except _Exhausted:
            found = _MAX_TS + 1
        if found > _MAX_TS:
            raise ScheduleError(f"schedule: {self.expr!r} has no fire time before 9990")
        if found < ts:  # would break "strictly increasing"; never expected
            raise RuntimeError(f"schedule: {self.expr!r} went backwards from {ts} to {found}")
        return found

    def next_after(self, after: datetime) -> datetime:
        """The first fire instant strictly after ``after`` (aware), in UTC, whole seconds."""
        return _to_datetime(self._first_at_or_after(_floor_ts(after, "after") + 1))

    def slots_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Up to ``limit`` slots ``s`` with ``start <= s <= end``, oldest first, in UTC."""
        _check_limit(limit)
        first, last = _ceil_ts(start, "start"), _floor_ts(end, "end")
        return [_to_datetime(ts) for ts in self._iter(first, last, limit)]

    def count_between(self, start: datetime, end: datetime) -> int:
        """How many slots satisfy ``start <= s <= end``, without enumerating them.

        Cost grows with the number of days in the range, not with the number of slots, so
        a job firing every second that was down for a month is counted in milliseconds.
        """
        return self._engine.count(_ceil_ts(start, "start"), _floor_ts(end, "end"))

    def last_slots_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The newest ``limit`` slots with ``start <= s <= end``, oldest first, in UTC.

        Used by catch-up after long outages: the start of the kept range is found by
        counting (bisection over instants), never by walking every slot since ``start``.
        """
        _check_limit(limit)
        first, last = _ceil_ts(start, "start"), _floor_ts(end, "end")
        engine = self._engine
        if limit == 0 or engine.count(first, last) <= limit:
            return [_to_datetime(ts) for ts in self._iter(first, last, limit)]
        if isinstance(engine, _Every):
            newest = last // engine.seconds * engine.seconds
            begin = newest - (limit - 1) * engine.seconds
        else:
            lo, hi = first, last  # invariant: count(lo, last) >= limit
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if engine.count(mid, last) >= limit:
                    lo = mid
                else:
                    hi = mid - 1
            begin = lo
        return [_to_datetime(ts) for ts in self._iter(begin, last, limit)]

    def _iter(self, first: int, last: int, limit: int) -> list[int]:
        out: list[int] = []
        engine = self._engine
        if isinstance(engine, _Every):
            ts = engine.first_at_or_after(first)
            stop = min(last + 1, ts + limit * engine.seconds)
            return list(range(ts, max(ts, stop), engine.seconds))
        ts = first
        while len(out) < limit and ts <= last:
            ts = self._first_at_or_after(ts)
            if ts > last:
                break
            out.append(ts)
            ts += 1
        return out


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit: must be an integer >= 0, got {limit!r}")


def parse_schedule(expr: str, timezone: str = "UTC") -> Schedule:
    """Validate ``expr`` in ``timezone`` up front and return the evaluator.

    Everything that can be wrong with a schedule is reported here, when the job is
    created, rather than when the leader first tries to fire it.
    """
    return Schedule(expr, timezone)
