"""The leader cut off from one worker's gRPC port (a TCP proxy the test controls): runs go
to the other worker, nothing is lost or doubled, and the worker gets work again once healed.

The worker advertises the proxy's address (CHRONORAFT_WORKER_ADVERTISE), so every RunTask
from any leader passes through it; its heartbeats and results go straight to the
controllers, as in a one-way partition.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.cluster.ledger import assert_every_slot_once, create_ledger_job, settle
from tests.cluster.tcp_proxy import TcpProxy
from tests.conftest import _dump_logs, build_cluster
from tests.helpers import all_runs, wait_until

pytestmark = pytest.mark.cluster


def _at(stamp: str | None) -> float:
    return datetime.fromisoformat(stamp).timestamp() if stamp else 0.0


def test_leader_cut_off_from_a_worker_dispatches_elsewhere_and_loses_nothing(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> None:
    proxy = TcpProxy("w1-grpc")
    cluster = build_cluster(tmp_path / "cluster", database_url)
    w1 = cluster.nodes["w1"]
    w1.env["CHRONORAFT_WORKER_ADVERTISE"] = proxy.address
    proxy.start(int(w1.env["CHRONORAFT_WORKER_PORT"]))
    try:
        cluster.start_all()
        base = cluster.url(cluster.wait_ready(timeout=90))
        ledger = tmp_path / "ledger.txt"
        job = create_ledger_job(base, ledger)
        wait_until(  # placement prefers w1 while both are idle (ties go by id)
            "runs on w1",
            lambda: any(
                r["worker_id"] == "w1" and r["state"] == "succeeded"
                for r in all_runs(base, job["id"])
            ),
            timeout=30,
        )

        proxy.block()
        cut_at = time.time()
        wait_until(
            "runs placed elsewhere during the cut",
            lambda: (
                sum(
                    r["state"] == "succeeded" and _at(r["dispatched_at"]) > cut_at + 1
                    for r in all_runs(base, job["id"])
                )
                >= 6
            ),
            timeout=30,
        )
        healed_at = time.time()
        during = [
            r for r in all_runs(base, job["id"]) if cut_at + 1 < _at(r["dispatched_at"]) < healed_at
        ]
        assert during and all(r["worker_id"] == "w2" for r in during)
        proxy.heal()

        wait_until(
            "w1 to get work again after the heal",
            lambda: any(
                r["worker_id"] == "w1"
                and r["state"] == "succeeded"
                and _at(r["dispatched_at"]) > healed_at
                for r in all_runs(base, job["id"])
            ),
            timeout=30,
        )
        runs = settle(cluster, job["id"])
        assert_every_slot_once(runs, ledger)
    finally:
        cluster.stop_all()
        _dump_logs(cluster, request.node.name)
        proxy.close()
