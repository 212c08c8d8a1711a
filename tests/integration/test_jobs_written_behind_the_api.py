"""Job rows the API did not write (SQL loads, restores): the leader copes with them.

A row without ``next_fire_at`` is scheduled from its expression and then advanced like any
other (it used to be re-read on every tick because the guarded advance never matched a
NULL); a row whose expression does not parse is reported and left out, while the other jobs
keep firing (the leader parses an expression when the job first fires, not at load).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from controller.local_cluster import LocalCluster
from tests.helpers import api, unique, wait_until

pytestmark = pytest.mark.cluster


def _insert_job(conn: psycopg.Connection[Any], schedule: str, fire_now: bool) -> int:
    row = conn.execute(
        "INSERT INTO jobs (name, schedule, command, args, next_fire_at) "
        "VALUES (%s, %s, 'true', '[]', CASE WHEN %s THEN now() END) RETURNING id",
        (unique("behind"), schedule, fire_now),
    ).fetchone()
    assert row is not None
    conn.execute("SELECT pg_notify('chronoraft_jobs', %s)", (str(row[0]),))
    return int(row[0])


def test_rows_without_next_fire_at_or_with_a_bad_expression(shared_cluster: LocalCluster) -> None:
    base = shared_cluster.url("c1")
    token = shared_cluster.admin_token
    with psycopg.connect(shared_cluster.database_url, autocommit=True) as conn:
        broken = _insert_job(conn, "99 * * * *", fire_now=True)
        unscheduled = _insert_job(conn, "* * * * * *", fire_now=False)
        try:

            def advanced_and_ran() -> tuple[Any, int] | None:
                nxt = conn.execute(
                    "SELECT next_fire_at FROM jobs WHERE id = %s", (unscheduled,)
                ).fetchone()
                ran = conn.execute(
                    "SELECT count(*) FROM runs WHERE job_id = %s AND state = 'succeeded'",
                    (unscheduled,),
                ).fetchone()
                return (nxt, ran[0]) if nxt and nxt[0] is not None and ran[0] >= 2 else None

            wait_until("the row without next_fire_at to fire and advance", advanced_and_ran, 30)
            one_per_slot = conn.execute(
                "SELECT count(*) = count(DISTINCT scheduled_for) FROM runs WHERE job_id = %s",
                (unscheduled,),
            ).fetchone()
            assert one_per_slot == (True,)
            assert conn.execute(
                "SELECT count(*) FROM runs WHERE job_id = %s", (broken,)
            ).fetchone() == (0,)
            leader = shared_cluster.leader()
            assert leader is not None
            log = shared_cluster.nodes[leader].log_path.read_text(errors="replace")
            assert "invalid schedule" in log and str(broken) in log
        finally:
            for job_id in (broken, unscheduled):
                api("DELETE", base, f"/api/v1/jobs/{job_id}", token=token)
