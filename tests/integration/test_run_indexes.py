"""Indexes on runs that cost nothing per run for what only searches and /metrics need.

Every state change of a run is a new row version with an entry in every full index, so
an index over all states (runs_state_recent) or over every version (a B-tree on
scheduled_for) is paid four times a run. The queue and the workers' holdings have their own
partial indexes; these tests check that the scrape and a search for failures find their
rows without reading the whole history, that a time-window search still finds its runs, and
that a list stops counting a long history (common/repo/paging.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from common.db import q
from common.repo.paging import HISTORY_COUNT_LIMIT, count_to, split_counted_total

HISTORY = 100_000


def _plan(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any] | None = None) -> str:
    rows = conn.execute("EXPLAIN " + sql, params).fetchall()
    return "\n".join(next(iter(r.values())) for r in rows)


def _runs(
    conn: psycopg.Connection[Any], job_id: int, state: str, count: int, hours_ago: int
) -> None:
    conn.execute(
        "INSERT INTO runs (job_id, scheduled_for, trigger, state, max_retries) "
        "SELECT %s, now() - make_interval(hours => %s, secs => g), 'schedule', %s, 0 "
        "FROM generate_series(1, %s) g",
        (job_id, hours_ago, state, count),
    )


def _with_history(conn: psycopg.Connection[Any]) -> None:
    """A job with a long finished history (in time order, as slots are created), a few
    failures an hour ago and a small queue now; analyzed."""
    row = conn.execute(
        "INSERT INTO jobs (name, schedule, command) VALUES ('idx', '0 3 * * *', 'true') "
        "RETURNING id"
    ).fetchone()
    assert row is not None
    job_id = int(row["id"])
    _runs(conn, job_id, "succeeded", HISTORY, hours_ago=48)
    _runs(conn, job_id, "failed", 7, hours_ago=1)
    for state, count in (("waiting", 2), ("pending", 3), ("dispatched", 4), ("running", 5)):
        _runs(conn, job_id, state, count, hours_ago=0)
    conn.execute("ANALYZE runs")


def test_metrics_count_the_unfinished_runs_without_reading_the_history(
    database_url: str,
) -> None:
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        _with_history(conn)
        counts = {r["state"]: r["n"] for r in conn.execute(q("runs_state_counts"))}
        plan = _plan(conn, q("runs_state_counts"))

    assert counts == {"waiting": 2, "pending": 3, "dispatched": 4, "running": 5}
    assert "Seq Scan" not in plan, plan
    assert "runs_state_recent" in plan and "runs_pending" in plan, plan


def test_searching_failures_reads_only_failures_and_a_time_window_finds_its_runs(
    database_url: str,
) -> None:
    """GET /api/v1/runs?state=failed finds the failures in the partial state index; a time
    window (?since=&until=, scheduled_for now indexed by BRIN) still finds exactly its runs."""
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        _with_history(conn)
        now = datetime.now(UTC)
        search = {"job_id": None, "state": None, "since": None, "until": None}
        search |= {"limit": 20, "offset": 0, "count_to": count_to(20, 0)}
        failed = {**search, "state": "failed"}
        window = {**search, "since": now - timedelta(hours=49), "until": now - timedelta(hours=48)}
        failures = conn.execute(q("runs_list"), failed).fetchall()
        in_window = conn.execute(q("runs_list"), window).fetchall()
        failed_plan = _plan(conn, q("runs_list"), failed)

    assert [r["state"] for r in failures] == ["failed"] * 7
    assert len(in_window) == 20 and 3598 <= int(in_window[0]["total_count"]) <= 3600
    assert "runs_state_recent" in failed_plan and "Seq Scan on runs" not in failed_plan


def test_a_run_list_over_a_long_history_reads_only_what_it_counts(database_url: str) -> None:
    """Unfiltered, the first page of 100,000 runs counts 10,000 of them and says there are
    more; a filter with few matches is counted exactly; a page past the limit is still
    found, counted up to its end."""
    search: dict[str, Any] = {"job_id": None, "state": None, "since": None, "until": None}
    first = {**search, "limit": 20, "offset": 0, "count_to": count_to(20, 0)}
    failed = {**first, "state": "failed"}
    deep = {**search, "limit": 20, "offset": 50_000, "count_to": count_to(20, 50_000)}
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        _with_history(conn)
        newest = [r["id"] for r in conn.execute("SELECT id FROM runs ORDER BY id DESC")]
        page, total, exact = split_counted_total(
            conn.execute(q("runs_list"), first).fetchall(), first["count_to"]
        )
        failures = split_counted_total(
            conn.execute(q("runs_list"), failed).fetchall(), failed["count_to"]
        )
        far, far_total, far_exact = split_counted_total(
            conn.execute(q("runs_list"), deep).fetchall(), deep["count_to"]
        )
        read = _rows_read_from_runs(conn, q("runs_list"), first)

    assert [r["id"] for r in page] == newest[:20]
    assert (total, exact) == (HISTORY_COUNT_LIMIT, False)
    assert (len(failures[0]), failures[1:]) == (7, (7, True))
    assert [r["id"] for r in far] == newest[50_000:50_020]
    assert (far_total, far_exact) == (50_020, False)
    assert read <= first["count_to"] + 20, read


def _rows_read_from_runs(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> int:
    """Rows that the plan's scans of ``runs`` returned, executing the query."""
    [row] = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchall()
    nodes = [row["QUERY PLAN"][0]["Plan"]]
    read = 0
    while nodes:
        node = nodes.pop()
        if node.get("Relation Name") == "runs":
            read += int(node["Actual Rows"]) * int(node.get("Actual Loops", 1))
        nodes.extend(node.get("Plans", []))
    return read
