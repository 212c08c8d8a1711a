"""PostgreSQL stops while a job fires every second: the API says 503 with a reason, the
leader waits, and when the database is back the missed slots run late — each exactly once."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from common import db
from common.pgserver import PgServer
from controller.local_cluster import http_json
from tests.cluster.ledger import assert_every_slot_once, create_ledger_job, settle
from tests.conftest import build_cluster
from tests.helpers import all_runs, api, wait_until
from worker.spool import spooled_keys

pytestmark = pytest.mark.cluster


def test_postgres_outage_gives_503_then_catches_up_without_duplicates(tmp_path: Path) -> None:
    pg = PgServer.create()
    pg.start()
    db.migrate(pg.url)
    cluster = build_cluster(tmp_path / "cluster", pg.url)
    try:
        cluster.start_all()
        leader = cluster.wait_ready(timeout=90)
        base = cluster.url(leader)
        ledger = tmp_path / "ledger.txt"
        job = create_ledger_job(base, ledger)
        wait_until(
            "runs before the outage",
            lambda: sum(r["state"] == "succeeded" for r in all_runs(base, job["id"])) >= 3,
            timeout=30,
        )

        pg.stop("fast")
        stopped_at = time.monotonic()

        def unavailable() -> dict | None:
            status, body = http_json("GET", base + "/api/v1/jobs", timeout=10)
            return body if status == 503 else None

        body = wait_until("the API to answer 503", unavailable, timeout=20)
        assert body["error"]["code"] == "database_unavailable"
        assert "PostgreSQL" in body["error"]["message"]
        status, ready = http_json("GET", base + "/readyz", timeout=10)
        assert status == 503 and ready["checks"]["database"] != "ok"
        assert http_json("GET", base + "/healthz")[0] == 200
        while time.monotonic() - stopped_at < 30:  # a 30 s outage; not an assertion
            time.sleep(0.5)
        pg.start()
        restarted = time.time()

        def caught_up() -> bool:
            runs = all_runs(base, job["id"])
            return any(
                r["state"] == "succeeded" and r["started_at"] and r["late"] for r in runs
            ) and any(
                r["state"] == "succeeded"
                and datetime.fromisoformat(r["scheduled_for"]).timestamp() > restarted + 1
                for r in runs
            )

        wait_until("late runs and new on-time runs after the outage", caught_up, timeout=60)
        print(f"caught up {time.time() - restarted:.2f}s after PostgreSQL came back")
        assert api("GET", base, "/readyz")[0] == 200
        runs = settle(cluster, job["id"])
        assert_every_slot_once(runs, ledger)
        assert any(r["late"] for r in runs), "slots missed during the outage should run late"
    finally:
        cluster.stop_all()
        pg.destroy()


def test_result_finished_during_an_outage_survives_a_worker_crash(tmp_path: Path) -> None:
    """The worker spools a result it cannot deliver; SIGKILL it, restart it, bring
    PostgreSQL back: the result is delivered from the on-disk spool."""
    pg = PgServer.create()
    pg.start()
    db.migrate(pg.url)
    cluster = build_cluster(tmp_path / "cluster", pg.url, workers=1)
    try:
        cluster.start_all()
        leader = cluster.wait_ready(timeout=90)
        base = cluster.url(leader)
        status, job = api(
            "POST",
            base,
            "/api/v1/jobs",
            {"name": "durable", "schedule": "0 0 1 1 *", "command": "sleep 2; echo durable"},
        )
        status, run = api("POST", base, f"/api/v1/jobs/{job['id']}/trigger")
        wait_until(
            "the run to start",
            lambda: api("GET", base, f"/api/v1/runs/{run['id']}")[1]["state"] == "running",
            timeout=30,
        )
        pg.stop("fast")
        spool = cluster.base_dir / "data" / "spool" / "w1"
        wait_until(
            "the finished result in the worker's spool",
            lambda: (run["id"], 1) in spooled_keys(spool),
            timeout=30,
        )
        cluster.kill("w1")
        cluster.start("w1")
        pg.start()

        def delivered() -> dict | None:
            status, body = http_json("GET", f"{base}/api/v1/runs/{run['id']}", timeout=10)
            return body if status == 200 and body["state"] == "succeeded" else None

        done = wait_until("the spooled result to be delivered", delivered, timeout=60)
        assert done["output"] == "durable\n" and done["attempt"] == 1
    finally:
        cluster.stop_all()
        pg.destroy()
