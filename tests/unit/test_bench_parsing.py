"""The benchmark's readers of /proc, pgbench, logs and /metrics, its job mix and record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench import config
from bench.jobmix import jobs, next_fire, schedule_of
from bench.limits import parse_pgbench
from bench.procstat import parse_stat, parse_status_rss_kb, postmaster_pid
from bench.prom import histogram
from bench.record import append_run, run_section
from bench.scale import parse_heap_line
from bench.table import Table
from common.schedule import parse_schedule

# A real line's shape; comm has a space and a parenthesis, as a process may name itself.
STAT = (
    "4242 (python (bench) x) S 4200 4242 4242 0 -1 4194560 1500 0 0 0 "
    "250 75 30 12 20 0 5 0 123456 987654321 2048 18446744073709551615"
)

STATUS = """Name:\tpostgres
State:\tS (sleeping)
VmPeak:\t  220000 kB
VmRSS:\t   51234 kB
Threads:\t1
"""

PGBENCH = """pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: simple update>
number of clients: 8
latency average = 2.734 ms
initial connection time = 12.345 ms
tps = 2926.108411 (without initial connection time)
"""

METRICS = """# HELP chronoraft_tick_seconds Time to fire one batch of due slots
# TYPE chronoraft_tick_seconds histogram
chronoraft_tick_seconds_bucket{le="0.005"} 3.0
chronoraft_tick_seconds_bucket{le="0.01"} 8.0
chronoraft_tick_seconds_bucket{le="+Inf"} 10.0
chronoraft_tick_seconds_count 10.0
chronoraft_tick_seconds_sum 0.09
# HELP chronoraft_heap_jobs Jobs in the leader's schedule heap
# TYPE chronoraft_heap_jobs gauge
chronoraft_heap_jobs 100000.0
"""


def test_stat_fields_are_read_after_the_last_parenthesis() -> None:
    stat = parse_stat(STAT)
    assert stat.pid == 4242
    assert stat.comm == "python (bench) x"
    assert stat.state == "S"
    assert stat.ppid == 4200
    assert (stat.utime, stat.stime, stat.cutime, stat.cstime) == (250, 75, 30, 12)
    assert stat.own_ticks == 325
    assert stat.children_ticks == 42


def test_rss_comes_from_vmrss_and_is_absent_for_kernel_threads() -> None:
    assert parse_status_rss_kb(STATUS) == 51234
    assert parse_status_rss_kb("Name:\tkthreadd\nState:\tS\n") is None


def test_postmaster_pid_is_the_first_line_of_its_pid_file(tmp_path: Path) -> None:
    (tmp_path / "postmaster.pid").write_text("31337\n/var/tmp/data\n1700000000\n5432\n")
    assert postmaster_pid(tmp_path) == 31337
    assert postmaster_pid(tmp_path / "missing") is None


def test_pgbench_report_gives_tps_without_connection_time_and_latency() -> None:
    assert parse_pgbench(PGBENCH) == (pytest.approx(2926.108411), pytest.approx(2.734))
    assert parse_pgbench("pgbench: error: connection refused") == (None, None)


def test_heap_line_is_found_among_other_json_log_lines() -> None:
    line = (
        '{"ts": "2026-11-23T12:00:01.250Z", "level": "info", "logger": "controller.leader.loop",'
        ' "msg": "schedule heap loaded", "node": "c2", "epoch": 7, "jobs": 100000, "ms": 840}'
    )
    found = parse_heap_line(line)
    assert found is not None
    assert found.jobs == 100000 and found.ms == 840
    assert found.at == datetime(2026, 11, 23, 12, 0, 1, 250000, tzinfo=UTC).timestamp()
    assert parse_heap_line('{"msg": "run dispatched"}') is None
    assert parse_heap_line("12:00:01.250 INFO not json") is None


def test_histogram_is_read_from_metrics_text_and_two_scrapes_subtract() -> None:
    later = histogram(METRICS, "chronoraft_tick_seconds")
    assert later.count == 10 and later.sum == pytest.approx(0.09)
    assert later.buckets[-1] == (float("inf"), 10.0)
    earlier = histogram(
        METRICS.replace("10.0", "4.0").replace("0.09", "0.03"), "chronoraft_tick_seconds"
    )
    window = later.minus(earlier)
    assert window.count == 6
    assert window.mean == pytest.approx(0.01)
    assert histogram(METRICS, "chronoraft_missing").count == 0


@pytest.mark.parametrize("i", [0, 5, 10, 11, 12, 13, 998, 999])
def test_job_mix_next_fire_agrees_with_the_product_schedule(i: int) -> None:
    expr = schedule_of(i, per_second=10)
    schedule = parse_schedule(expr, "UTC")
    for now in (
        datetime(2026, 11, 23, 12, 30, 15, 500000, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
    ):
        assert next_fire(expr, now) == schedule.next_after(now)


def test_job_mix_is_deterministic_and_mostly_hourly_or_daily() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    batch = list(jobs(0, 1000, 100, now))
    assert [j.name for j in batch[:2]] == ["scale-0", "scale-1"]
    assert sum(j.schedule == "* * * * * *" for j in batch) == 100
    assert batch == list(jobs(0, 1000, 100, now))
    assert all(now < j.next_fire_at <= now + timedelta(days=1) for j in batch)


def test_quick_fills_only_the_sizes_not_given_on_the_command_line() -> None:
    quick = config.parse(["--quick", "--sizes", "500"])
    assert quick.sizes == [500]
    assert quick.kills == config.SIZES["kills"][1]
    full = config.parse([])
    assert full.sizes == [100, 300, 600, 1000, 5000]
    assert full.kills >= 30
    assert full.scale_jobs[-1] == 100_000
    assert full.only == list(config.BENCHMARKS)


def test_a_run_is_appended_after_the_existing_record(tmp_path: Path) -> None:
    record = tmp_path / "benchmarks.md"
    record.write_text("# Benchmarks\n\nhand-written analysis\n")
    table = Table("Fire rate", ["N", "fired/s"])
    table.add(100, 100.0)
    when = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    append_run(record, when, "python -m bench --quick", {"cores": "2"}, [table])
    text = record.read_text()
    assert text.startswith(
        "# Benchmarks\n\nhand-written analysis\n\n## Run of 2026-11-23 12:00 UTC"
    )
    assert "Machine: cores 2." in text
    assert "| 100 | 100 |" in text
    assert run_section(when, "x", {}, []).startswith("## Run of 2026-11-23 12:00 UTC: `x`")
