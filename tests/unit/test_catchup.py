import math
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from common.catchup import (
    CatchupMode,
    DuePlan,
    SlotDecision,
    _plan_missed,
    plan_due,
    start_deadline_missed,
)
from common.schedule import parse_schedule

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
MINUTELY = parse_schedule("* * * * *")


def sec(n: float) -> timedelta:
    return timedelta(seconds=n)


def actions(plan: DuePlan) -> list[str]:
    return [d.action for d in plan.decisions]


def test_nothing_due_returns_no_decisions_and_keeps_next_fire_at() -> None:
    next_fire_at = T0 + sec(60)
    plan = plan_due(MINUTELY, next_fire_at, T0, catchup_window=60)
    assert plan == DuePlan(decisions=[], next_fire_at=next_fire_at, omitted_skips=0)
    assert plan.next_fire_at is next_fire_at


def test_slot_due_right_now_fires_on_time_and_schedule_moves_on() -> None:
    plan = plan_due(MINUTELY, T0, T0, catchup_window=60)
    assert plan.decisions == [SlotDecision(T0, "fire", None)]
    assert plan.next_fire_at == T0 + sec(60)
    assert plan.omitted_skips == 0


def test_on_time_grace_is_inclusive() -> None:
    assert actions(plan_due(MINUTELY, T0, T0 + sec(2), catchup_window=0)) == ["fire"]
    late = plan_due(MINUTELY, T0, T0 + sec(2.001), catchup_window=60)
    assert actions(late) == ["late"]
    assert actions(plan_due(MINUTELY, T0, T0 + sec(5), 0, on_time_grace=5)) == ["fire"]


def test_next_fire_at_is_the_first_slot_strictly_after_now() -> None:
    plan = plan_due(MINUTELY, T0, T0 + sec(60), catchup_window=600)
    assert [d.slot for d in plan.decisions] == [T0, T0 + sec(60)]
    assert plan.next_fire_at == T0 + sec(120)


def test_unaligned_next_fire_at_starts_at_the_first_slot_at_or_after_it() -> None:
    plan = plan_due(MINUTELY, T0 + sec(1), T0 + sec(60), catchup_window=600)
    assert [d.slot for d in plan.decisions] == [T0 + sec(60)]


def test_mode_all_runs_every_missed_slot_inside_the_window_late() -> None:
    now = T0 + sec(180)
    plan = plan_due(MINUTELY, T0, now, catchup_window=600, mode=CatchupMode.ALL)
    assert actions(plan) == ["late", "late", "late", "fire"]
    assert plan.decisions[0].reason == "late by 3m"
    assert [d.slot for d in plan.decisions] == [T0 + sec(60 * i) for i in range(4)]


def test_window_edge_is_inclusive_and_older_slots_are_skipped_with_the_window_in_the_reason() -> (
    None
):
    now = T0 + sec(120)
    plan = plan_due(MINUTELY, T0, now, catchup_window=60)
    assert plan.decisions == [
        SlotDecision(T0, "skip", "missed: older than catchup_window 1m"),
        SlotDecision(T0 + sec(60), "late", "late by 1m"),  # exactly the window: still late
        SlotDecision(T0 + sec(120), "fire", None),
    ]


def test_mode_latest_replays_only_the_newest_missed_slot() -> None:
    now = T0 + sec(240)
    plan = plan_due(MINUTELY, T0, now, catchup_window=200, mode=CatchupMode.LATEST)
    assert plan.decisions == [
        SlotDecision(T0, "skip", "missed: older than catchup_window 3m20s"),
        SlotDecision(T0 + sec(60), "skip", "missed: catchup=latest"),
        SlotDecision(T0 + sec(120), "skip", "missed: catchup=latest"),
        SlotDecision(T0 + sec(180), "late", "late by 1m"),
        SlotDecision(T0 + sec(240), "fire", None),
    ]


def test_mode_latest_without_an_on_time_slot_still_runs_one_late() -> None:
    plan = plan_due(MINUTELY, T0, T0 + sec(150), catchup_window=600, mode="latest")
    assert actions(plan) == ["skip", "skip", "late"]


def test_mode_latest_when_every_missed_slot_is_too_old_runs_nothing_late() -> None:
    plan = plan_due(MINUTELY, T0, T0 + sec(150), catchup_window=10, mode=CatchupMode.LATEST)
    assert actions(plan) == ["skip", "skip", "skip"]
    assert {d.reason for d in plan.decisions} == {"missed: older than catchup_window 10s"}


def test_mode_none_skips_missed_slots_but_fires_on_time_ones() -> None:
    plan = plan_due(MINUTELY, T0, T0 + sec(120), catchup_window=600, mode=CatchupMode.NONE)
    assert plan.decisions == [
        SlotDecision(T0, "skip", "missed: catchup=none"),
        SlotDecision(T0 + sec(60), "skip", "missed: catchup=none"),
        SlotDecision(T0 + sec(120), "fire", None),
    ]


def test_zero_window_skips_everything_that_is_not_on_time() -> None:
    plan = plan_due(MINUTELY, T0, T0 + sec(61), catchup_window=0)
    assert plan.decisions == [
        SlotDecision(T0, "skip", "missed: older than catchup_window 0s"),
        SlotDecision(T0 + sec(60), "fire", None),
    ]


def test_mode_may_be_given_as_a_string() -> None:
    assert actions(plan_due(MINUTELY, T0, T0 + sec(60), 600, mode="none")) == ["skip", "fire"]


def test_decisions_are_ascending_and_unique() -> None:
    s = parse_schedule("*/10 * * * * *", "America/New_York")
    fall_back = datetime(2026, 11, 1, 6, tzinfo=UTC)
    plan = plan_due(s, fall_back - sec(3600), fall_back + sec(3600), catchup_window=86400)
    slots = [d.slot for d in plan.decisions]
    assert len(slots) == 721
    assert all(b > a for a, b in zip(slots, slots[1:], strict=False))


def test_leader_down_across_a_spring_forward_gap_sees_the_collapsed_slot_once() -> None:
    s = parse_schedule("*/15 2 * * *", "Europe/Berlin")
    gap_end = datetime(2026, 3, 29, 1, tzinfo=UTC)
    plan = plan_due(s, gap_end - sec(86400), gap_end + sec(3600), catchup_window=7200)
    day_before = gap_end - sec(86400)  # 02:00 CET on 28 March
    assert [(d.slot, d.action) for d in plan.decisions] == [
        (day_before, "skip"),
        (day_before + sec(900), "skip"),
        (day_before + sec(1800), "skip"),
        (day_before + sec(2700), "skip"),
        (gap_end, "late"),  # 02:00..02:45 of 29 March, one run at 03:00 CEST
    ]


# ------------------------------------------------------------------------------ the cap


def test_more_slots_than_the_cap_keeps_the_newest_and_counts_the_rest() -> None:
    now = T0 + sec(60 * 20)
    plan = plan_due(MINUTELY, T0, now, catchup_window=120, max_decisions=5)
    assert [d.slot for d in plan.decisions] == [now - sec(60 * i) for i in range(4, -1, -1)]
    assert actions(plan) == ["skip", "skip", "late", "late", "fire"]
    assert plan.omitted_skips == 16
    assert plan.next_fire_at == now + sec(60)


def test_dropped_slots_that_would_have_run_late_are_counted_as_skips() -> None:
    now = T0 + sec(60 * 20)
    plan = plan_due(MINUTELY, T0, now, catchup_window=86400, max_decisions=5)
    assert actions(plan) == ["late", "late", "late", "late", "fire"]
    assert plan.omitted_skips == 16


def test_every_second_job_down_for_30_days_is_planned_quickly_and_exactly() -> None:
    s = parse_schedule("* * * * * *")
    now = T0 + timedelta(days=30)
    started = time.perf_counter()
    plan = plan_due(s, T0, now, catchup_window=60)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert len(plan.decisions) == 10_000
    assert plan.decisions[-1] == SlotDecision(now, "fire", None)
    assert plan.decisions[0].slot == now - sec(9_999)
    assert plan.omitted_skips == 30 * 86400 + 1 - 10_000
    assert actions(plan).count("late") == 58  # ages 3..60 s
    assert plan.next_fire_at == now + sec(1)


def test_every_second_interval_down_for_30_days_is_planned_quickly_and_exactly() -> None:
    s = parse_schedule("@every 1s")
    now = T0 + timedelta(days=30)
    started = time.perf_counter()
    plan = plan_due(s, T0, now, catchup_window=60, mode=CatchupMode.LATEST)
    assert time.perf_counter() - started < 1.0
    assert plan.omitted_skips == 30 * 86400 + 1 - 10_000
    assert actions(plan).count("late") == 1
    assert plan.decisions[-1].action == "fire"


def test_30_day_gap_across_a_fall_back_counts_the_repeated_hour() -> None:
    s = parse_schedule("* * * * * *", "America/New_York")
    start = datetime(2026, 10, 15, tzinfo=UTC)
    now = start + timedelta(days=30)
    started = time.perf_counter()
    plan = plan_due(s, start, now, catchup_window=60, max_decisions=10_000)
    assert time.perf_counter() - started < 1.0
    # Absolute-time rule: every second of the 30 days is a slot, the repeated hour included.
    assert len(plan.decisions) + plan.omitted_skips == 30 * 86400 + 1


def test_30_day_gap_for_a_fixed_hour_job_across_a_fall_back() -> None:
    s = parse_schedule("* * 1 * * *", "America/New_York")  # every second of 01:00-01:59
    start = datetime(2026, 10, 15, tzinfo=UTC)
    now = start + timedelta(days=30)
    plan = plan_due(s, start, now, catchup_window=60, max_decisions=1000)
    # Wall-clock rule: the repeated 01:xx hour on 1 November fires once.
    assert len(plan.decisions) + plan.omitted_skips == 30 * 3600
    assert len(plan.decisions) == 1000


# -------------------------------------------------------------------------- validation


@pytest.mark.parametrize("window", [-1, math.nan, math.inf, True, "60"])
def test_catchup_window_must_be_finite_non_negative_seconds(window: object) -> None:
    with pytest.raises(ValueError, match="^catchup_window: "):
        plan_due(MINUTELY, T0, T0, window)  # type: ignore[arg-type]


@pytest.mark.parametrize("grace", [-0.1, math.nan])
def test_on_time_grace_must_be_finite_non_negative_seconds(grace: float) -> None:
    with pytest.raises(ValueError, match="^on_time_grace: "):
        plan_due(MINUTELY, T0, T0, 60, on_time_grace=grace)


@pytest.mark.parametrize("cap", [0, -1, True, 1.5])
def test_max_decisions_must_be_a_positive_integer(cap: object) -> None:
    with pytest.raises(ValueError, match="^max_decisions: "):
        plan_due(MINUTELY, T0, T0, 60, max_decisions=cap)  # type: ignore[arg-type]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_due(MINUTELY, T0, T0, 60, mode="some")  # type: ignore[arg-type]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="^now: "):
        plan_due(MINUTELY, T0, datetime(2026, 5, 4), 60)
    with pytest.raises(ValueError, match="^next_fire_at: "):
        plan_due(MINUTELY, datetime(2026, 5, 4), T0, 60)


# --- the starting deadline: a slot's run still pending after its window is skipped ---


def test_slot_run_may_start_up_to_its_window_inclusive() -> None:
    assert start_deadline_missed("schedule", 1, T0, T0 + sec(60), catchup_window=60) is None
    assert start_deadline_missed("catchup", 1, T0, T0 + sec(59), catchup_window=60) is None


def test_slot_run_past_its_window_is_missed_with_the_reason() -> None:
    reason = start_deadline_missed("schedule", 1, T0, T0 + sec(60.001), catchup_window=60)
    assert reason == "missed: not started within catchup_window 1m"
    assert start_deadline_missed("catchup", 1, T0, T0 + sec(3600), catchup_window=60) == reason


def test_deadline_is_never_shorter_than_the_on_time_grace() -> None:
    assert start_deadline_missed("schedule", 1, T0, T0 + sec(2), catchup_window=0) is None
    assert start_deadline_missed("schedule", 1, T0, T0 + sec(2.5), catchup_window=0) == (
        "missed: not started within catchup_window 2s"
    )


@pytest.mark.parametrize("trigger", ["manual", "backfill", "dag"])
def test_runs_asked_for_explicitly_have_no_deadline(trigger: str) -> None:
    assert start_deadline_missed(trigger, 1, T0, T0 + sec(86400), catchup_window=60) is None


def test_retries_have_no_deadline() -> None:
    """A retry waits its backoff on purpose; the slot being old is expected."""
    assert start_deadline_missed("schedule", 2, T0, T0 + sec(86400), catchup_window=60) is None


def test_deadline_rejects_naive_times_and_bad_windows() -> None:
    with pytest.raises(ValueError, match="now"):
        start_deadline_missed("schedule", 1, T0, datetime(2026, 5, 4, 12, 1), catchup_window=60)
    with pytest.raises(ValueError, match="catchup_window"):
        start_deadline_missed("schedule", 1, T0, T0, catchup_window=-1)


@pytest.mark.parametrize(
    ("expr", "zone"),
    [
        ("* * * * * *", "UTC"),
        ("*/7 * * * * *", "UTC"),
        ("30 2 * * *", "Europe/Berlin"),
        ("0 */2 * * * *", "America/New_York"),
        ("@every 90s", "UTC"),
    ],
)
def test_single_due_slot_shortcut_agrees_with_the_general_plan(expr: str, zone: str) -> None:
    """plan_due answers the one-slot-on-time case without the general planner; for any
    stored next_fire_at (a slot or not) and any now, both must give the same plan."""
    schedule = parse_schedule(expr, zone)
    rng = random.Random(f"{expr}{zone}")
    starts = [datetime(2026, 3, 29, 0, 30, tzinfo=UTC), datetime(2026, 11, 1, 5, 0, tzinfo=UTC)]
    for _ in range(400):
        base = rng.choice(starts) + sec(rng.randrange(0, 6 * 3600))
        slot = schedule.next_after(base)
        next_fire_at = slot if rng.random() < 0.7 else slot + sec(rng.choice([-0.5, 0.25, 3]))
        now = next_fire_at + sec(rng.choice([0, 0.001, 1.5, 2, 2.5, 30, 61, 200, 4000]))
        for mode in CatchupMode:
            assert plan_due(schedule, next_fire_at, now, 60, mode) == _plan_missed(
                schedule, next_fire_at, now, 60.0, 2.0, mode, 10_000
            ), (next_fire_at, now, mode)
