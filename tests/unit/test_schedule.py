"""Specifications for common.schedule: syntax, validation, @every alignment and DST rules.

DST dates used (2026):
    America/New_York  spring forward 2026-03-08 07:00Z (02:00 EST -> 03:00 EDT)
                      fall back      2026-11-01 06:00Z (02:00 EDT -> 01:00 EST)
    Europe/Berlin     spring forward 2026-03-29 01:00Z (02:00 CET -> 03:00 CEST)
                      fall back      2026-10-25 01:00Z (03:00 CEST -> 02:00 CET)
"""

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from common.schedule import Schedule, ScheduleError, parse_schedule

NY = "America/New_York"
BERLIN = "Europe/Berlin"

SPRING = {NY: datetime(2026, 3, 8, 7, tzinfo=UTC), BERLIN: datetime(2026, 3, 29, 1, tzinfo=UTC)}
FALL = {NY: datetime(2026, 11, 1, 6, tzinfo=UTC), BERLIN: datetime(2026, 10, 25, 1, tzinfo=UTC)}
# UTC has no transitions; its entries only give "around a transition" tests a window.
SPRING["UTC"], FALL["UTC"] = SPRING[NY], FALL[NY]
ZONES = [NY, BERLIN]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def chain(schedule: Schedule, after: datetime, n: int) -> list[datetime]:
    out = []
    for _ in range(n):
        after = schedule.next_after(after)
        out.append(after)
    return out


# ----------------------------------------------------------------------------- syntax


def test_five_field_cron_fires_on_matching_minutes() -> None:
    s = parse_schedule("*/15 9-10 * * *")
    assert chain(s, utc(2026, 5, 4, 8, 59), 5) == [
        utc(2026, 5, 4, 9, 0),
        utc(2026, 5, 4, 9, 15),
        utc(2026, 5, 4, 9, 30),
        utc(2026, 5, 4, 9, 45),
        utc(2026, 5, 4, 10, 0),
    ]


def test_six_field_cron_reads_the_first_field_as_seconds() -> None:
    s = parse_schedule("*/10 * * * * *")
    assert chain(s, utc(2026, 5, 4, 12, 0, 0), 3) == [
        utc(2026, 5, 4, 12, 0, 10),
        utc(2026, 5, 4, 12, 0, 20),
        utc(2026, 5, 4, 12, 0, 30),
    ]


def test_six_field_seconds_first_not_seconds_last() -> None:
    # "5 0 * * * *" = second 5 of minute 0 of every hour; read seconds-last it would be
    # "minute 5 of hour 0, second 0".
    s = parse_schedule("5 0 * * * *")
    assert chain(s, utc(2026, 5, 4, 0, 0, 0), 2) == [
        utc(2026, 5, 4, 0, 0, 5),
        utc(2026, 5, 4, 1, 0, 5),
    ]


def test_six_field_year_last_expression_is_rejected_as_a_bad_day_of_week() -> None:
    with pytest.raises(ScheduleError, match=r"day-of-week field '2030'"):
        parse_schedule("0 0 1 1 * 2030")


def test_five_field_cron_fires_at_second_zero() -> None:
    s = parse_schedule("* * * * *")
    assert s.next_after(utc(2026, 5, 4, 12, 0, 30)) == utc(2026, 5, 4, 12, 1, 0)


@pytest.mark.parametrize(
    ("macro", "after", "expected"),
    [
        ("@yearly", utc(2026, 5, 4, 12), utc(2027, 1, 1)),
        ("@annually", utc(2026, 5, 4, 12), utc(2027, 1, 1)),
        ("@monthly", utc(2026, 5, 4, 12), utc(2026, 6, 1)),
        ("@weekly", utc(2026, 5, 4, 12), utc(2026, 5, 10)),  # Sunday
        ("@daily", utc(2026, 5, 4, 12), utc(2026, 5, 5)),
        ("@midnight", utc(2026, 5, 4, 12), utc(2026, 5, 5)),
        ("@hourly", utc(2026, 5, 4, 12, 1), utc(2026, 5, 4, 13)),
        ("@minutely", utc(2026, 5, 4, 12, 1, 1), utc(2026, 5, 4, 12, 2)),
        ("@secondly", utc(2026, 5, 4, 12, 1, 1), utc(2026, 5, 4, 12, 1, 2)),
    ],
)
def test_macros(macro: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(macro).next_after(after) == expected


def test_macros_ignore_case_and_surrounding_whitespace() -> None:
    assert parse_schedule("  @Daily ").next_after(utc(2026, 1, 1, 1)) == utc(2026, 1, 2)


def test_macros_follow_the_time_zone() -> None:
    assert parse_schedule("@daily", NY).next_after(utc(2026, 5, 4, 12)) == utc(2026, 5, 5, 4)


def test_names_lists_ranges_and_steps() -> None:
    s = parse_schedule("0 9 * JAN,jul MON-FRI")
    assert s.next_after(utc(2026, 5, 4)) == utc(2026, 7, 1, 9)  # Wednesday 1 July


def test_day_of_month_and_day_of_week_both_restricted_means_either() -> None:
    s = parse_schedule("0 0 13 * FRI")  # Vixie cron: the 13th OR any Friday
    days = [d.date().isoformat() for d in chain(s, utc(2026, 2, 10), 4)]
    assert days == ["2026-02-13", "2026-02-20", "2026-02-27", "2026-03-06"]


def test_last_day_of_month() -> None:
    s = parse_schedule("0 0 L 2 *")
    assert chain(s, utc(2026, 1, 1), 3) == [utc(2026, 2, 28), utc(2027, 2, 28), utc(2028, 2, 29)]


def test_nth_weekday_last_weekday_and_nearest_weekday() -> None:
    assert parse_schedule("0 0 * * FRI#2").next_after(utc(2026, 1, 1)) == utc(2026, 1, 9)
    assert parse_schedule("0 0 * * L5").next_after(utc(2026, 1, 1)) == utc(2026, 1, 30)
    # 2026-02-15 is a Sunday: the nearest weekday is Monday the 16th.
    assert parse_schedule("0 0 15W * *").next_after(utc(2026, 2, 1)) == utc(2026, 2, 16)


def test_leap_day_schedule_waits_for_the_next_leap_year() -> None:
    s = parse_schedule("0 12 29 2 *")
    assert s.next_after(utc(2026, 1, 1)) == utc(2028, 2, 29, 12)


def test_expression_whitespace_is_normalised() -> None:
    s = parse_schedule("  */5   *\t* * *  ")
    assert s.expr == "*/5 * * * *"
    assert s == parse_schedule("*/5 * * * *")
    assert hash(s) == hash(parse_schedule("*/5 * * * *"))


def test_schedule_is_immutable() -> None:
    s = parse_schedule("* * * * *")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.expr = "0 0 * * *"  # type: ignore[misc]


def test_schedule_can_be_constructed_directly_with_the_same_validation() -> None:
    assert Schedule("*/5 * * * *", NY) == parse_schedule("*/5 * * * *", NY)
    with pytest.raises(ScheduleError):
        Schedule("61 * * * *")


def test_rule_family_is_exposed() -> None:
    assert parse_schedule("30 2 * * *").follows_wall_clock
    assert parse_schedule("@daily").follows_wall_clock
    assert not parse_schedule("*/5 * * * *").follows_wall_clock
    assert not parse_schedule("0 0-23 * * *").follows_wall_clock  # every hour, as a range
    assert not parse_schedule("@hourly").follows_wall_clock
    assert not parse_schedule("@every 1h").follows_wall_clock
    assert not parse_schedule("0 */1 * * *").follows_wall_clock  # every hour, spelled out


EXPRESSIONS_CHECKED_AGAINST_CRONITER = [
    "* * * * *",
    "*/7 * * * *",
    "5,35 */3 * * *",
    "0 9-17/2 * * mon-fri",
    "15 10 1,15 * *",
    "0 0 13 * 5",
    "0 12 L * *",
    "0 0 * * sun",
    "0 6 * jan-mar,oct *",
    "30 23 31 * *",
    "0 0 29 2 *",
    "0 22-2 * * *",
    "*/20 * * * * *",
    "7 */5 * * * *",
    "0 30 8 * * 1-5",
    "0 0 * * fri#3",
    "0 0 * * L1",
    "0 8 1W * *",
    "0 0 ? * 3",
]


@pytest.mark.parametrize("expr", EXPRESSIONS_CHECKED_AGAINST_CRONITER)
def test_utc_fire_times_agree_with_croniter_seconds_first(expr: str) -> None:
    s = parse_schedule(expr)
    start = datetime(2026, 1, 27, 13, 17, 29)
    reference = croniter(expr, start, second_at_beginning=True)
    expected = [reference.get_next(datetime).replace(tzinfo=UTC) for _ in range(40)]
    assert chain(s, start.replace(tzinfo=UTC), 40) == expected


# ------------------------------------------------------------------------- @every


def test_every_interval_is_aligned_to_the_unix_epoch() -> None:
    s = parse_schedule("@every 7s")
    epoch = utc(1970, 1, 1)
    after = utc(2026, 5, 4, 12, 0, 0)
    first = s.next_after(after)
    assert (first - epoch).total_seconds() % 7 == 0
    assert timedelta(0) < first - after <= timedelta(seconds=7)
    assert chain(s, first, 2) == [first + timedelta(seconds=7), first + timedelta(seconds=14)]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5), ("90s", 90), ("1m30s", 90), ("2h", 7200), ("1d", 86400), ("30", 30)],
)
def test_every_accepts_go_style_durations(text: str, seconds: int) -> None:
    s = parse_schedule(f"@every {text}")
    assert s.interval_seconds == seconds
    assert s.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1) + timedelta(seconds=seconds)


def test_every_slots_do_not_depend_on_time_zone_or_on_when_they_are_asked() -> None:
    after = utc(2026, 11, 1, 5, 59, 59, 123456)
    zones = ["UTC", NY, BERLIN, "Asia/Kolkata", "Australia/Lord_Howe"]
    results = {zone: chain(parse_schedule("@every 90s", zone), after, 5) for zone in zones}
    assert len({tuple(r) for r in results.values()}) == 1
    # A leader that starts later computes the same instants.
    late = parse_schedule("@every 90s", NY).next_after(results["UTC"][2] - timedelta(seconds=1))
    assert late == results["UTC"][2]


def test_every_is_absolute_time_across_dst() -> None:
    s = parse_schedule("@every 1h", NY)
    slots = s.slots_between(FALL[NY] - timedelta(hours=3), FALL[NY] + timedelta(hours=3), 100)
    assert len(slots) == 7
    assert all(b - a == timedelta(hours=1) for a, b in zip(slots, slots[1:], strict=False))


def test_cron_schedules_have_no_interval() -> None:
    assert parse_schedule("*/5 * * * *").interval_seconds is None


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("@every 500ms", "interval must be at least 1s, got 500ms"),
        ("@every 0s", "interval must be at least 1s"),
        ("@every 1.5s", "whole number of seconds"),
        ("@every 1m0.5s", "whole number of seconds"),
        ("@every", "needs an interval"),
        ("@every abc", "invalid interval"),
        ("@every -5s", "invalid interval"),
        ("@every 1h 30m", "invalid interval"),
        ("@every 367d", "at most 366d"),
    ],
)
def test_invalid_every_intervals(expr: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule(expr)
    assert str(err.value).startswith(f"schedule: {expr!r}")
    assert fragment in str(err.value)


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("61 * * * *", "is not a valid cron expression: minute field '61'"),
        ("* 24 * * *", "hour field '24'"),
        ("0 0 32 * *", "day-of-month field '32'"),
        ("0 0 0 * *", "day-of-month field '0'"),
        ("0 0 * 13 *", "month field '13'"),
        ("0 0 * 0 *", "month field '0'"),
        ("0 0 * * 8", "day-of-week field '8'"),
        ("60 * * * * *", "second field '60'"),
        ("*/0 * * * *", "minute field '*/0'"),
        ("1- * * * *", "minute field '1-'"),
        ("-1 * * * *", "minute field '-1'"),
        ("1,,2 * * * *", "minute field '1,,2'"),
        ("0 0 * foo *", "month field 'foo'"),
        ("0 0 * * 1#6", "day-of-week field '1#6'"),
        ("０ * * * *", "minute field '０'"),
        ("H * * * *", "hashed/random"),
        ("R * * * *", "hashed/random"),
        ("0 H(0-5) * * *", "hashed/random"),
        ("* * * *", "has 4 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("abc", "has 1 field;"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("@fortnightly", "unknown macro '@fortnightly'"),
        ("@daily 5", "unknown macro '@daily 5'"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
    ],
)
def test_invalid_schedules_say_what_is_wrong(expr: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule(expr)
    message = str(err.value)
    assert message.startswith("schedule: ")
    assert fragment in message


def test_out_of_range_message_names_expression_and_field() -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule("61 * * * *")
    assert str(err.value).startswith(
        "schedule: '61 * * * *' is not a valid cron expression: minute field '61' "
    )
    assert "0-59" in str(err.value)


def test_random_values_are_refused_because_leaders_would_disagree() -> None:
    # croniter silently expands R to a random minute: two parses, two schedules.
    with pytest.raises(ScheduleError, match="every leader must compute the same"):
        parse_schedule("R * * * *")


def test_schedule_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_schedule("nope")


def test_non_string_expression_is_refused() -> None:
    with pytest.raises(ScheduleError, match="^schedule: must be a string"):
        parse_schedule(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ("Mars/Base", "timezone: unknown time zone 'Mars/Base'"),
        ("america/new_york_city", "timezone: unknown time zone 'america/new_york_city'"),
        ("America", "timezone: unknown time zone 'America'"),
        ("../etc/passwd", "timezone: unknown time zone '../etc/passwd'"),
        ("/etc/localtime", "timezone: unknown time zone '/etc/localtime'"),
        ("", "timezone: must not be empty"),
        ("localtime", "timezone: 'localtime' depends on the host; use an IANA name"),
    ],
)
def test_invalid_time_zones_are_named(zone: str, message: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule("* * * * *", zone)
    assert str(err.value) == message


def test_non_string_time_zone_is_refused() -> None:
    with pytest.raises(ScheduleError, match="^timezone: must be a string"):
        parse_schedule("* * * * *", 5)  # type: ignore[arg-type]


def test_time_zone_is_validated_for_every_schedules_too() -> None:
    with pytest.raises(ScheduleError, match="^timezone: unknown time zone"):
        parse_schedule("@every 5s", "Mars/Base")


# ---------------------------------------------------------------- next_after contract


def test_next_after_is_strictly_after_an_exact_slot() -> None:
    s = parse_schedule("*/5 * * * *")
    assert s.next_after(utc(2026, 5, 4, 12, 5)) == utc(2026, 5, 4, 12, 10)


def test_next_after_handles_microseconds() -> None:
    s = parse_schedule("* * * * * *")
    assert s.next_after(utc(2026, 5, 4, 12, 0, 0, 999999)) == utc(2026, 5, 4, 12, 0, 1)
    assert s.next_after(utc(2026, 5, 4, 11, 59, 59, 1)) == utc(2026, 5, 4, 12, 0, 0)


def test_next_after_returns_utc_whole_seconds_for_any_aware_input() -> None:
    s = parse_schedule("0 9 * * *", NY)
    after = datetime(2026, 5, 4, 10, 30, 15, 250, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    result = s.next_after(after)
    assert result.tzinfo is UTC
    assert result.microsecond == 0
    assert result == local(NY, 2026, 5, 4, 9)


def test_next_after_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="^after: must be a timezone-aware datetime"):
        parse_schedule("* * * * *").next_after(datetime(2026, 1, 1))


def test_next_after_refuses_instants_outside_the_supported_years() -> None:
    with pytest.raises(ValueError, match="^after: must be between 1900 and 9989"):
        parse_schedule("* * * * *").next_after(utc(9995, 1, 1))


def test_slots_between_is_inclusive_at_both_ends_and_limited() -> None:
    s = parse_schedule("*/10 * * * *")
    start, end = utc(2026, 5, 4, 12, 0), utc(2026, 5, 4, 13, 0)
    slots = s.slots_between(start, end, 100)
    assert slots[0] == start and slots[-1] == end and len(slots) == 7
    assert s.slots_between(start, end, 3) == slots[:3]
    assert s.slots_between(start, end, 0) == []
    assert s.slots_between(end, start, 10) == []
    assert s.slots_between(start + timedelta(microseconds=1), end, 100) == slots[1:]


def test_slots_between_for_every_schedules() -> None:
    s = parse_schedule("@every 30s")
    slots = s.slots_between(utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 0, 2), 10)
    assert slots == [
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 0, 1),
        utc(2026, 1, 1, 0, 1, 30),
        utc(2026, 1, 1, 0, 2),
    ]
    assert s.slots_between(utc(2026, 1, 1), utc(2026, 1, 2), 2) == [
        utc(2026, 1, 1),
        utc(2026, 1, 1, 0, 0, 30),
    ]


@pytest.mark.parametrize("limit", [-1, True, 1.5, None])
def test_slot_limits_must_be_non_negative_integers(limit: object) -> None:
    with pytest.raises(ValueError, match="^limit: "):
        parse_schedule("* * * * *").slots_between(utc(2026, 1, 1), utc(2026, 1, 2), limit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "expr", ["*/7 * * * *", "@every 7s", "30 2 * * *", "*/5 * 1 * * *", "*/5 * 2 * * *"]
)
@pytest.mark.parametrize("zone", ["UTC", *ZONES])
def test_count_and_last_slots_agree_with_enumeration_across_both_transitions(
    expr: str, zone: str
) -> None:
    s = parse_schedule(expr, zone)
    for transition in (SPRING[zone], FALL[zone]):
        start = transition - timedelta(hours=30, seconds=11)
        end = transition + timedelta(hours=30, seconds=3)
        slots = s.slots_between(start, end, 100_000)
        assert len(slots) < 100_000
        assert s.count_between(start, end) == len(slots)
        assert s.last_slots_between(start, end, 5) == slots[-5:]
        assert s.last_slots_between(start, end, 100_000) == slots


# --------------------------------------------------- DST rule b: fixed-hour cron (wall clock)


@pytest.mark.parametrize(
    ("zone", "next_day_0230"),
    [(NY, utc(2026, 3, 9, 6, 30)), (BERLIN, utc(2026, 3, 30, 0, 30))],
)
def test_spring_forward_slot_fires_once_at_first_instant_after_gap(
    zone: str, next_day_0230: datetime
) -> None:
    s = parse_schedule("30 2 * * *", zone)
    # 02:30 does not exist that night: it fires at 03:00 local, the end of the gap.
    assert chain(s, SPRING[zone] - timedelta(hours=20), 2) == [SPRING[zone], next_day_0230]
    assert SPRING[zone].astimezone(ZoneInfo(zone)).strftime("%H:%M") == "03:00"


def test_spring_forward_new_york_example_from_the_product_decision() -> None:
    s = parse_schedule("30 2 * * *", NY)
    assert s.next_after(utc(2026, 3, 7, 12)) == utc(2026, 3, 8, 7)
    assert s.next_after(utc(2026, 3, 8, 7)) == utc(2026, 3, 9, 6, 30)


@pytest.mark.parametrize("zone", ZONES)
def test_several_missing_slots_in_one_gap_collapse_into_one_fire(zone: str) -> None:
    s = parse_schedule("*/15 2 * * *", zone)
    slots = s.slots_between(
        SPRING[zone] - timedelta(hours=6), SPRING[zone] + timedelta(hours=6), 100
    )
    assert slots == [SPRING[zone]]


@pytest.mark.parametrize("zone", ZONES)
def test_a_real_slot_at_the_end_of_the_gap_merges_with_the_collapsed_ones(zone: str) -> None:
    s = parse_schedule("0,30 2,3 * * *", zone)
    slots = s.slots_between(
        SPRING[zone] - timedelta(hours=2), SPRING[zone] + timedelta(hours=2), 100
    )
    assert slots == [SPRING[zone], SPRING[zone] + timedelta(minutes=30)]


@pytest.mark.parametrize(
    ("zone", "expr", "first_pass"),
    [
        (NY, "30 1 * * *", utc(2026, 11, 1, 5, 30)),  # 01:30 EDT
        (BERLIN, "30 2 * * *", utc(2026, 10, 25, 0, 30)),  # 02:30 CEST
    ],
)
def test_fall_back_slot_fires_once_at_first_occurrence(
    zone: str, expr: str, first_pass: datetime
) -> None:
    s = parse_schedule(expr, zone)
    next_day = first_pass + timedelta(days=1, hours=1)  # same wall time, standard time
    assert chain(s, first_pass - timedelta(hours=12), 2) == [first_pass, next_day]


@pytest.mark.parametrize("zone", ZONES)
def test_next_after_from_inside_the_second_pass_skips_the_repeated_walls(zone: str) -> None:
    hour = 1 if zone == NY else 2
    s = parse_schedule(f"*/15 {hour} * * *", zone)
    inside_second_pass = FALL[zone] + timedelta(minutes=20)
    tomorrow = (FALL[zone] + timedelta(days=1)).astimezone(ZoneInfo(zone))
    assert s.next_after(inside_second_pass) == local(
        zone, tomorrow.year, tomorrow.month, tomorrow.day, hour, 0
    )


@pytest.mark.parametrize("zone", ZONES)
def test_fixed_hour_job_runs_each_slot_once_on_a_fall_back_day(zone: str) -> None:
    hour = 1 if zone == NY else 2
    s = parse_schedule(f"*/15 {hour} * * *", zone)
    slots = s.slots_between(FALL[zone] - timedelta(hours=6), FALL[zone] + timedelta(hours=6), 100)
    assert len(slots) == 4
    assert slots[-1] < FALL[zone]  # all in the first pass


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("expr", ["0 2 * * *", "30 1 * * *", "@daily", "15 3 * * *"])
def test_daily_job_fires_exactly_once_per_local_day_around_transitions(
    zone: str, expr: str
) -> None:
    s = parse_schedule(expr, zone)
    for transition in (SPRING[zone], FALL[zone]):
        slots = s.slots_between(transition - timedelta(days=3), transition + timedelta(days=3), 99)
        days = [slot.astimezone(ZoneInfo(zone)).date() for slot in slots]
        assert len(days) == len(set(days)) >= 5
        assert all(b > a for a, b in zip(slots, slots[1:], strict=False))


# ----------------------------------------------- DST rule a: hour field '*' (absolute time)


@pytest.mark.parametrize("zone", ZONES)
def test_hourly_schedule_fires_in_both_passes_of_the_repeated_hour(zone: str) -> None:
    s = parse_schedule("30 * * * *", zone)
    slots = s.slots_between(FALL[zone] - timedelta(hours=3), FALL[zone] + timedelta(hours=3), 100)
    assert len(slots) == 6
    assert all(b - a == timedelta(hours=1) for a, b in zip(slots, slots[1:], strict=False))
    walls = [x.astimezone(ZoneInfo(zone)).strftime("%H:%M") for x in slots]
    repeated = "01:30" if zone == NY else "02:30"
    assert walls.count(repeated) == 2


@pytest.mark.parametrize("zone", ZONES)
def test_hourly_schedule_has_no_gap_or_double_in_spring_forward(zone: str) -> None:
    s = parse_schedule("30 * * * *", zone)
    slots = s.slots_between(
        SPRING[zone] - timedelta(hours=3), SPRING[zone] + timedelta(hours=3), 100
    )
    assert len(slots) == 6
    assert all(b - a == timedelta(hours=1) for a, b in zip(slots, slots[1:], strict=False))
    assert "02:30" not in [x.astimezone(ZoneInfo(zone)).strftime("%H:%M") for x in slots]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("transition", ["spring", "fall"])
def test_every_five_minutes_is_evenly_spaced_through_transitions(
    zone: str, transition: str
) -> None:
    moment = (SPRING if transition == "spring" else FALL)[zone]
    s = parse_schedule("*/5 * * * *", zone)
    slots = s.slots_between(moment - timedelta(hours=2), moment + timedelta(hours=2), 1000)
    assert len(slots) == 49
    assert {b - a for a, b in zip(slots, slots[1:], strict=False)} == {timedelta(minutes=5)}


@pytest.mark.parametrize(
    ("zone", "local_midnight", "next_local_midnight", "hours"),
    [
        (NY, utc(2026, 11, 1, 4), utc(2026, 11, 2, 5), 25),
        (BERLIN, utc(2026, 10, 24, 22), utc(2026, 10, 25, 23), 25),
        (NY, utc(2026, 3, 8, 5), utc(2026, 3, 9, 4), 23),
        (BERLIN, utc(2026, 3, 28, 23), utc(2026, 3, 29, 22), 23),
    ],
)
def test_ten_second_schedule_over_a_whole_dst_day_is_strictly_increasing_and_complete(
    zone: str, local_midnight: datetime, next_local_midnight: datetime, hours: int
) -> None:
    s = parse_schedule("*/10 * * * * *", zone)
    seen = []
    current = local_midnight - timedelta(microseconds=1)
    for _ in range(hours * 360 + 10):  # guard: never loop forever
        current = s.next_after(current)
        if current >= next_local_midnight:
            break
        seen.append(current)
    assert len(seen) == hours * 360
    assert len(set(seen)) == len(seen)
    assert all(b - a == timedelta(seconds=10) for a, b in zip(seen, seen[1:], strict=False))
    assert s.count_between(local_midnight, next_local_midnight - timedelta(seconds=1)) == len(seen)


# ------------------------------------------------------ DST reference model (brute force)


def _reference_slots(expr: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Slow but obvious model of the DST rules, built from croniter's naive wall times."""
    tz = ZoneInfo(zone)
    wall_clock = parse_schedule(expr, zone).follows_wall_clock

    def wall(x: datetime) -> datetime:
        return x.astimezone(tz).replace(tzinfo=None)

    it = croniter(expr, wall(start) - timedelta(hours=3), second_at_beginning=True)
    out: set[datetime] = set()
    while (w := it.get_next(datetime)) <= wall(end) + timedelta(hours=3):
        readings = {w.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1)}
        instants = sorted(x for x in readings if wall(x) == w)
        if not wall_clock:
            out.update(instants)
        elif instants:
            out.add(instants[0])
        else:  # non-existent wall: the first instant whose reading is past it
            x = w.replace(tzinfo=tz, fold=1).astimezone(UTC)
            while wall(x) <= w:
                x += timedelta(minutes=1)
            out.add(x)
    return sorted(x for x in out if start <= x <= end)


@pytest.mark.parametrize("zone", [*ZONES, "Australia/Lord_Howe", "America/Santiago"])
@pytest.mark.parametrize(
    "expr",
    [
        "*/20 * * * *",
        "0 * * * *",
        "45 * * * *",
        "0,30 0-3 * * *",
        "*/10 1-2 * * *",
        "0 */2 * * *",
        "59 23 * * *",
        "0 0 * * *",
    ],
)
def test_dst_rules_match_a_brute_force_reference(expr: str, zone: str) -> None:
    s = parse_schedule(expr, zone)
    tz = ZoneInfo(zone)
    year = 2026
    # Find this zone's two transitions in the year by scanning hourly offsets.
    moments = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    while t.year == year:
        if t.astimezone(tz).utcoffset() != (t + timedelta(hours=1)).astimezone(tz).utcoffset():
            moments.append(t)
        t += timedelta(hours=1)
    assert len(moments) == 2
    for moment in moments:
        start, end = moment - timedelta(hours=26), moment + timedelta(hours=26)
        expected = _reference_slots(expr, zone, start, end)
        assert s.slots_between(start, end, 10_000) == expected
        assert s.count_between(start, end) == len(expected)


@pytest.mark.parametrize("expr", ["*/5 * * * *", "30 2 * * *", "*/15 1-3 * * *", "@every 7m"])
@pytest.mark.parametrize("zone", ZONES)
def test_next_after_is_strictly_increasing_and_consistent_with_slots(expr: str, zone: str) -> None:
    s = parse_schedule(expr, zone)
    for moment in (SPRING[zone], FALL[zone]):
        start, end = moment - timedelta(hours=4), moment + timedelta(hours=4)
        slots = s.slots_between(start, end + timedelta(days=2), 10_000)
        probe = start
        while probe <= end:
            nxt = s.next_after(probe)
            assert nxt > probe
            assert nxt == next(x for x in slots if x > probe)
            probe += timedelta(minutes=7, seconds=13, microseconds=500)
