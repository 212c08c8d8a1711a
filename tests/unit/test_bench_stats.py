"""The benchmark's pure helpers: statistics, tables, fire accounting."""

from __future__ import annotations

import math

import pytest

from bench.fires import (
    Fire,
    FireStats,
    analyze,
    lateness_stages,
    slots_in,
    sustained_target_note,
)
from bench.stats import (
    Summary,
    burst_start_floor_ms,
    histogram_quantile,
    percentile,
    ratio,
    summarize,
)
from bench.table import Table, format_cell, render_markdown, render_text


def test_percentile_is_nearest_rank_on_sorted_samples() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(list(range(1, 101)), 99) == 99  # round(0.99 * 99) = 98 -> 99


def test_percentile_of_nothing_is_nan_not_an_error() -> None:
    assert math.isnan(percentile([], 99))


def test_summary_has_min_median_p99_max_and_scales_to_other_units() -> None:
    s = summarize([0.3, 0.1, 0.2])
    assert (s.n, s.min, s.median, s.max) == (3, 0.1, 0.2, 0.3)
    assert s.scaled(1000).median == pytest.approx(200.0)
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.p99)


def test_ratio_is_nan_when_either_side_is_missing_or_zero() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(None, 2.0))
    assert math.isnan(ratio(float("nan"), 2.0))


def test_histogram_quantile_reports_the_bucket_bound() -> None:
    buckets = [(0.005, 50.0), (0.01, 98.0), (0.025, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, buckets) == 0.005
    assert histogram_quantile(0.99, buckets) == 0.025
    assert math.isnan(histogram_quantile(0.99, []))


def test_cells_are_formatted_by_magnitude_and_missing_values_show_as_dash() -> None:
    assert format_cell(1234.56) == "1235"
    assert format_cell(12.345) == "12.3"
    assert format_cell(1.2345) == "1.23"
    assert format_cell(0.12345) == "0.123"
    assert format_cell(7) == "7"
    assert format_cell(None) == "-"
    assert format_cell(float("nan")) == "-"
    assert format_cell("x") == "x"


def test_text_table_aligns_columns_and_lists_notes() -> None:
    table = Table("Title", ["name", "value"])
    table.add("short", 1.5)
    table.add("a longer name", 100.0)
    table.note("how to read it")
    lines = render_text(table).splitlines()
    assert lines[0] == "Title"
    assert lines[2].startswith("name")
    assert lines[4] == "short           1.50"
    assert lines[5] == "a longer name    100"
    assert lines[-1] == "  note: how to read it"


def test_markdown_table_escapes_pipes() -> None:
    table = Table("T", ["a", "b"])
    table.add("x|y", 2)
    md = render_markdown(table)
    assert "### T" in md
    assert "| x\\|y | 2 |" in md
    assert "|---|---|" in md


def test_a_row_with_the_wrong_number_of_cells_is_refused() -> None:
    with pytest.raises(ValueError):
        Table("T", ["a", "b"]).add(1)


def test_slots_in_counts_whole_seconds_of_a_half_open_window() -> None:
    assert slots_in(100.0, 110.0) == 10
    assert slots_in(100.5, 110.0) == 9
    assert slots_in(110.0, 100.0) == 0


def test_analyze_counts_each_started_slot_once_and_everything_else_as_missed() -> None:
    records = [
        Fire("a", 100.0, 100.010),
        Fire("a", 101.0, 101.030),
        Fire("a", 101.0, 101.020),  # the same slot twice: counted once, earliest start
        Fire("b", 100.0, None, "pending"),  # never started
        Fire("b", 101.0, None, "skipped"),
        Fire("b", 102.0, 102.5),  # outside the window
    ]
    stats = analyze(records, jobs=2, t0=100.0, t1=102.0)
    assert stats.expected == 4
    assert stats.fired == 2
    assert stats.missed == 2
    assert stats.skipped == 1
    assert stats.fired_per_s == 1.0
    assert stats.fired_percent == 50.0
    assert stats.late_ms.min == pytest.approx(10.0)
    assert stats.late_ms.max == pytest.approx(20.0)


def test_lateness_stages_split_each_started_fire_from_slot_to_process() -> None:
    records = [
        Fire("a", 100.0, 100.050, created=100.002, dispatched=100.010),
        Fire("b", 100.0, 100.090, created=100.004, dispatched=100.030),
        Fire("c", 100.0, None, "pending", created=100.004),  # never started: no stage
        Fire("d", 100.0, 100.040, created=100.003),  # dispatch unknown: first stage only
        Fire("e", 102.0, 102.5, created=102.001, dispatched=102.2),  # outside the window
    ]
    slot_created, created_dispatched, dispatched_started = lateness_stages(records, 100.0, 102.0)
    assert slot_created == pytest.approx([2.0, 4.0, 3.0])
    assert created_dispatched == pytest.approx([8.0, 26.0])
    assert dispatched_started == pytest.approx([40.0, 60.0])


def test_burst_start_floor_is_the_time_to_spawn_the_quantiles_share_of_the_burst() -> None:
    assert burst_start_floor_ms(1000, 2000.0) == 495.0  # the 990th start, at 2,000/s
    assert burst_start_floor_ms(100, 1000.0, q=0.5) == 50.0
    assert math.isnan(burst_start_floor_ms(100, 0.0))


def _stats(rate: int, missed: int, p99: float) -> FireStats:
    late = Summary(rate, 1.0, p99 / 2, p99, p99 + 1)
    return FireStats(jobs=rate, seconds=1.0, expected=rate, fired=rate - missed, skipped=0,
                     late_ms=late)  # fmt: skip


def test_sustained_target_is_judged_against_the_peers_best_rate_without_a_miss() -> None:
    peer = {100: _stats(100, 0, 200.0), 300: _stats(300, 0, 500.0), 1000: _stats(1000, 800, 990)}
    ours = {100: _stats(100, 0, 40.0), 300: _stats(300, 0, 90.0), 1000: _stats(1000, 0, 300.0)}
    note = sustained_target_note(ours, peer, lambda n: float("nan"))
    assert note is not None
    assert "(2 x 300 = 600/s)" in note  # the peer's 1000 row missed slots: not its best
    assert "chronoraft's best here 300/s (N=300, p99 90.0 ms): not met" in note
    assert "floor" not in note

    ours[600] = _stats(600, 0, 95.0)
    assert sustained_target_note(ours, peer, lambda n: float("nan")).endswith(": met")


def test_sustained_target_says_when_the_floor_puts_it_out_of_reach() -> None:
    peer = {300: _stats(300, 0, 500.0)}
    ours = {300: _stats(300, 0, 150.0), 600: _stats(600, 1, 99.0)}
    note = sustained_target_note(ours, peer, lambda n: burst_start_floor_ms(n, 3718.0))
    assert note is not None
    assert "no chronoraft size had p99 < 100 ms without a miss: not met" in note
    assert "600 processes cannot all start within 160 ms" in note
    assert sustained_target_note(ours, {300: _stats(300, 5, 1.0)}, lambda n: 0.0) is None
