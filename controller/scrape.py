"""Numbers read from PostgreSQL when Prometheus scrapes a controller's /metrics.

Unfinished runs by state and the worker fleet live in PostgreSQL, not in any one process,
so they are read at scrape time (small queries, bounded by a timeout) instead of being
counted locally where a failover would lose them.
"""

from __future__ import annotations

import asyncio
import logging

from psycopg_pool import AsyncConnectionPool

from common.repo import leadership
from common.repo import runs as runs_repo
from common.repo import workers as workers_repo
from controller.metrics import ControllerMetrics

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT = 2.0


async def refresh(pool: AsyncConnectionPool, metrics: ControllerMetrics, lease: float) -> None:
    """Update the read-at-scrape gauges; on any database trouble set ``chronoraft_db_up`` 0."""
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT):
            async with pool.connection() as conn:
                counts = await runs_repo.state_counts(conn)
                fleet = await workers_repo.all_workers(conn, lease)
                current = await leadership.current(conn)
    except Exception as exc:  # noqa: BLE001 - a scrape must answer even with PostgreSQL away
        log.debug("metrics scrape without PostgreSQL: %s", exc)
        metrics.db_up.set(0)
        return
    metrics.db_up.set(1)
    for state, n in counts.items():  # each unfinished state, 0 when none
        metrics.runs.labels(state).set(n)
    alive = [w for w in fleet if w["alive"]]
    metrics.workers.labels("alive").set(len(alive))
    metrics.workers.labels("lost").set(len(fleet) - len(alive))
    metrics.workers.labels("draining").set(sum(1 for w in alive if w["draining"]))
    metrics.worker_running.clear()
    metrics.worker_capacity.clear()
    for w in alive:
        metrics.worker_running.labels(w["id"]).set(w["running"])
        metrics.worker_capacity.labels(w["id"]).set(w["capacity"])
    metrics.cluster_epoch.set(int(current["epoch"]) if current else 0)
