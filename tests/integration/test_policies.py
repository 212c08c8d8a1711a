"""Overlap policies, concurrency caps, catch-up modes and backfill on a real cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from controller.local_cluster import LocalCluster
from tests.helpers import all_runs, api, unique, wait_until

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled", "skipped"}


@pytest.fixture
def base(shared_cluster: LocalCluster) -> str:
    return shared_cluster.url("c2")


def make_job(base: str, **fields: Any) -> dict[str, Any]:
    status, job = api("POST", base, "/api/v1/jobs", {"name": unique("pol"), **fields})
    assert status == 201, job
    return job


def stop_and_settle(base: str, job_id: int) -> list[dict[str, Any]]:
    api("POST", base, f"/api/v1/jobs/{job_id}/pause")

    def settled() -> list[dict[str, Any]] | None:
        runs = all_runs(base, job_id)
        return runs if all(r["state"] in TERMINAL for r in runs) else None

    return wait_until("all runs of the job to finish", settled, timeout=60)


def max_overlap(runs: list[dict[str, Any]]) -> int:
    """The largest number of runs whose [started_at, finished_at] intervals overlap."""
    events = []
    for r in runs:
        if r["started_at"] and r["finished_at"] and r["state"] != "skipped":
            events.append((datetime.fromisoformat(r["started_at"]), 1))
            events.append((datetime.fromisoformat(r["finished_at"]), -1))
    current = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        current += delta
        peak = max(peak, current)
    return peak


def test_overlap_skip_never_runs_two_at_once_and_counts_skips(base: str) -> None:
    job = make_job(base, schedule="* * * * * *", command="sleep 2.5", overlap="forbid")
    assert job["overlap"] == "skip"
    wait_until(
        "some slots skipped by overlap",
        lambda: (
            api("GET", base, f"/api/v1/jobs/{job['id']}")[1]["counters"]["skipped_by_overlap"] >= 3
        ),
        timeout=40,
    )
    runs = stop_and_settle(base, job["id"])
    skipped = [r for r in runs if r["state"] == "skipped"]
    assert skipped and all("overlap=skip" in r["error"] for r in skipped)
    assert max_overlap(runs) == 1


def test_overlap_buffer_one_keeps_one_waiting_and_drops_the_rest(base: str) -> None:
    job = make_job(base, schedule="* * * * * *", command="sleep 3", overlap="buffer_one")
    wait_until(
        "buffer drops",
        lambda: api("GET", base, f"/api/v1/jobs/{job['id']}")[1]["counters"]["buffer_dropped"] >= 2,
        timeout=40,
    )
    runs = stop_and_settle(base, job["id"])
    assert max_overlap(runs) == 1
    assert any(r["state"] == "skipped" and "buffer_one" in r["error"] for r in runs)


def test_overlap_buffer_all_runs_every_slot_one_after_another(base: str) -> None:
    job = make_job(base, schedule="@every 1s", command="sleep 1.5", overlap="buffer_all")
    wait_until(
        "several runs",
        lambda: sum(r["state"] == "succeeded" for r in all_runs(base, job["id"])) >= 3,
        timeout=40,
    )
    runs = stop_and_settle(base, job["id"])
    assert max_overlap(runs) == 1
    assert not [r for r in runs if r["state"] == "skipped"]
    finished = sorted((r for r in runs if r["state"] == "succeeded"), key=lambda r: r["started_at"])
    slots = [r["scheduled_for"] for r in finished]
    assert slots == sorted(slots), "buffered slots must run in slot order"


def test_overlap_cancel_other_replaces_the_running_run(base: str) -> None:
    job = make_job(base, schedule="@every 2s", command="sleep 30", overlap="replace")
    assert job["overlap"] == "cancel_other"
    wait_until(
        "a replaced run",
        lambda: any(r["state"] == "cancelled" for r in all_runs(base, job["id"])),
        timeout=40,
    )
    runs = stop_and_settle(base, job["id"])
    cancelled = [r for r in runs if r["state"] == "cancelled"]
    assert cancelled
    # Cancelling ends the process group, so the replaced run did not keep going.
    for r in cancelled:
        assert (
            datetime.fromisoformat(r["finished_at"]) - datetime.fromisoformat(r["started_at"])
        ).total_seconds() < 10


def test_max_concurrency_caps_parallel_runs(base: str) -> None:
    job = make_job(base, schedule="* * * * * *", command="sleep 3", max_concurrency=2)
    wait_until(
        "enough runs",
        lambda: sum(r["state"] == "succeeded" for r in all_runs(base, job["id"])) >= 4,
        timeout=60,
    )
    runs = stop_and_settle(base, job["id"])
    assert max_overlap(runs) <= 2


@pytest.mark.parametrize(
    ("mode", "late", "skipped"), [("all", 20, 0), ("latest", 1, 20), ("none", 0, 20)]
)
def test_catchup_modes_after_missed_slots(
    shared_cluster: LocalCluster, base: str, mode: str, late: int, skipped: int
) -> None:
    """Pretend the cluster missed 20 slots: move next_fire_at 20 s back behind its back."""
    job = make_job(base, schedule="@every 1s", command="true", catchup=mode, paused=True)
    with psycopg.connect(shared_cluster.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE jobs SET paused = false, next_fire_at = date_trunc('second', now())"
            " - interval '25 seconds' WHERE id = %s",
            (job["id"],),
        )
        conn.execute("SELECT pg_notify('chronoraft_jobs', %s)", (str(job["id"]),))

    def planned() -> list[dict[str, Any]] | None:
        runs = all_runs(base, job["id"])
        return runs if len(runs) >= 26 else None

    wait_until("the missed slots to be planned", planned, timeout=30)
    runs = stop_and_settle(base, job["id"])
    # The 20 oldest slots are clear misses (23-25 s old, past the 2 s on-time grace).
    misses = sorted(runs, key=lambda r: r["scheduled_for"])[:20]
    if mode == "latest":  # exactly one catch-up run, for the newest missed slot
        assert sum(r["late"] for r in runs) == late
    else:
        assert sum(r["late"] for r in misses) == late
    assert sum(r["state"] == "skipped" for r in misses) == skipped
    for r in misses:
        if r["state"] == "skipped":
            assert r["error"].startswith("missed")
    counters = api("GET", base, f"/api/v1/jobs/{job['id']}")[1]["counters"]
    assert counters["missed"] >= skipped


def test_backfill_runs_each_slot_once_and_a_repeat_is_harmless(base: str) -> None:
    job = make_job(base, schedule="* * * * *", command="echo $CHRONORAFT_SCHEDULED_FOR")
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(minutes=9)
    body = {"start": start.isoformat(), "end": end.isoformat(), "rate": 20}
    status, first = api("POST", base, f"/api/v1/jobs/{job['id']}/backfill", body)
    assert status == 202 and first["slots"] == 10 and first["created"] == 10
    status, again = api("POST", base, f"/api/v1/jobs/{job['id']}/backfill", body)
    assert again["created"] == 0 and again["existing"] == 10
    runs = wait_until(
        "backfilled runs to succeed",
        lambda: (lambda rs: rs if sum(r["state"] == "succeeded" for r in rs) >= 10 else None)(
            [r for r in all_runs(base, job["id"]) if r["trigger"] == "backfill"]
        ),
        timeout=60,
    )
    assert len({r["scheduled_for"] for r in runs}) == 10
    api("DELETE", base, f"/api/v1/jobs/{job['id']}")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start": "2026-01-01T00:00:00Z"}, "end"),
        ({"start": "yesterday", "end": "2026-01-01T00:00:00Z"}, "start"),
        ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2999-01-01T00:00:00Z"}, "end"),
        ({"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
        # found by the fuzz run: a year the schedule cannot evaluate was a 500
        ({"start": "0237-02-19T21:03:34Z", "end": "2026-01-01T00:00:00Z"}, "start"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z", "rate": 0}, "rate"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z", "x": 1}, "x"),
    ],
)
def test_bad_backfill_requests_name_the_field(base: str, body: dict, field: str) -> None:
    job = make_job(base, schedule="* * * * *", command="true", paused=True)
    status, reply = api("POST", base, f"/api/v1/jobs/{job['id']}/backfill", body)
    assert status == 400, reply
    assert reply["error"]["field"] == field


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"overlap": "sometimes"}, "overlap"),
        ({"catchup": "most"}, "catchup"),
        ({"max_concurrency": -1}, "max_concurrency"),
    ],
)
def test_bad_policy_fields_are_400(base: str, fields: dict, field: str) -> None:
    status, reply = api(
        "POST",
        base,
        "/api/v1/jobs",
        {"name": unique("bad"), "schedule": "* * * * *", "command": "x", **fields},
    )
    assert status == 400 and reply["error"]["field"] == field
