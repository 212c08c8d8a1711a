"""Failover benchmark: SIGKILL the leader N times while a 1-second job runs.

For each kill: time until another controller reports itself leader, and time until the
first run dispatched under the new epoch (read from PostgreSQL's run table). Prints a table
of min / median / p99 / max. Usage: ``.venv/bin/python -m bench.failover --kills 10``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from common import db
from common.pgserver import PgServer
from controller.local_cluster import LocalCluster, http_json


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def first_dispatch_after(url: str, epoch: int, deadline: float) -> float | None:
    with psycopg.connect(url, autocommit=True) as conn:
        while time.time() < deadline:
            row = conn.execute(
                "SELECT extract(epoch FROM min(dispatched_at)) FROM runs WHERE epoch = %s", (epoch,)
            ).fetchone()
            if row and row[0] is not None:
                return float(row[0])
            time.sleep(0.02)
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--raft-min", type=float, default=None, help="override min timeout")
    parser.add_argument("--raft-max", type=float, default=None, help="override max timeout")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="chronoraft-bench-"))
    pg = PgServer.create(str(base / "pg"))
    pg.start()
    db.migrate(pg.url)
    extra = {}
    if args.raft_min is not None:
        extra["CHRONORAFT_RAFT_MIN_TIMEOUT"] = str(args.raft_min)
    if args.raft_max is not None:
        extra["CHRONORAFT_RAFT_MAX_TIMEOUT"] = str(args.raft_max)
    cluster = LocalCluster(
        base_dir=base,
        database_url=pg.url,
        http_base=18080,
        raft_base=17000,
        grpc_base=19090,
        worker_base=15051,
        worker_http_base=19100,
        log_level="WARNING",
    )
    elected: list[float] = []
    dispatched: list[float] = []
    try:
        cluster.start_all()
        leader = cluster.wait_ready(90)
        http_json(
            "POST",
            cluster.url(leader) + "/api/v1/jobs",
            {"name": "bench-1s", "schedule": "* * * * * *", "command": "true"},
            token=cluster.admin_token,
        )
        time.sleep(3)
        for i in range(args.kills):
            leader = cluster.wait_for("leader", cluster.leader, 30)
            old_epoch = cluster.cluster_info(leader)["epoch"]
            killed = time.time()
            cluster.kill(leader)
            new = cluster.wait_for(
                "new leader",
                lambda old=leader: (lambda n: n if n and n != old else None)(cluster.leader()),
                30,
                interval=0.02,
            )
            elected.append(time.time() - killed)
            info = cluster.cluster_info(new)
            epoch = info["epoch"] if info and info["epoch"] > old_epoch else old_epoch + 1
            at = first_dispatch_after(pg.url, epoch, time.time() + 30)
            if at is not None:
                dispatched.append(at - killed)
            print(
                f"kill {i + 1}: {leader} -> {new}: leader {elected[-1]:.3f}s, "
                f"first dispatch {dispatched[-1] if at else float('nan'):.3f}s",
                flush=True,
            )
            cluster.start(leader)
            cluster.wait_for("rejoin", lambda name=leader: cluster.cluster_info(name), 30)
            time.sleep(2)
    finally:
        cluster.stop_all()
        pg.destroy()
    print()
    print(f"{'metric (s)':<34}{'n':>4}{'min':>8}{'median':>8}{'p99':>8}{'max':>8}")
    for label, values in (
        ("SIGKILL -> new leader reports", elected),
        ("SIGKILL -> first dispatch (new)", dispatched),
    ):
        if values:
            print(
                f"{label:<34}{len(values):>4}{min(values):>8.3f}{statistics.median(values):>8.3f}"
                f"{percentile(values, 99):>8.3f}{max(values):>8.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
