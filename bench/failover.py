"""Failover: SIGKILL (and SIGSTOP) the leader while a 1-second job runs.

Per SIGKILL: time until another controller reports itself leader, and time until the first
run dispatched under the new epoch (``runs.dispatched_at`` in PostgreSQL, written by the
new leader). Per SIGSTOP: the same two times while the old leader is frozen (it still holds
its connections, maybe a row lock, until PostgreSQL's idle-in-transaction timeout ends its
session), then SIGCONT and the time until the old leader has stepped down.

``python -m bench.failover --kills 10`` still works: it is ``python -m bench --only
failover --kills 10``.
"""

from __future__ import annotations

import signal
import sys
import time
from argparse import Namespace

from bench import pgsql
from bench.harness import BenchEnv, api, progress, wait_new_leader
from bench.stats import summarize
from bench.table import Table
from controller.local_cluster import LocalCluster

NAME = "failover"


def _new_epoch(cluster: LocalCluster, node: str, old_epoch: int) -> int:
    info = cluster.cluster_info(node) or {}
    leading = (info.get("node") or {}).get("leading_epoch")
    if leading:
        return int(leading)
    epoch = info.get("epoch")
    return int(epoch) if epoch and epoch > old_epoch else old_epoch + 1


def _s(seconds: float | None) -> str:
    return "none within 30s" if seconds is None else f"{seconds:.3f}s"


def _rejoined(cluster: LocalCluster, name: str) -> bool:
    info = cluster.cluster_info(name, timeout=1.0)
    return bool(info) and info["node"]["role"] != "leader" and not info["node"]["leading_epoch"]


def _after(fault_at: float, first: pgsql.Dispatch | None) -> tuple[float | None, float | None]:
    """(s from the fault to the new leader's first dispatch, s from the later of the fault
    and that run's slot to its dispatch). The job fires every second, and when the old
    leader had dispatched the current slot just before the fault, the next one is not due
    for up to a second however fast the failover: the second figure leaves that wait out."""
    if first is None:
        return None, None
    return first.at - fault_at, first.at - max(fault_at, first.slot)


def kill_once(
    cluster: LocalCluster, url: str, settle: float
) -> tuple[float, float | None, float | None]:
    """One SIGKILL; returns (s to new leader, s to first dispatch by it, s from the later of
    the kill and that run's slot to its dispatch); None where nothing was dispatched."""
    leader = cluster.wait_for("a leader", cluster.leader, 30)
    old_epoch = int(cluster.cluster_info(leader)["epoch"])
    killed = time.time()
    cluster.kill(leader)
    new = wait_new_leader(cluster, leader)
    elected = time.time() - killed
    first = pgsql.first_dispatch(url, _new_epoch(cluster, new, old_epoch), time.time() + 30)
    cluster.start(leader)
    cluster.wait_for("the killed node to rejoin", lambda: _rejoined(cluster, leader), 60)
    time.sleep(settle)
    return (elected, *_after(killed, first))


def stop_once(
    cluster: LocalCluster, url: str, settle: float
) -> tuple[float, float | None, float | None, float]:
    """One SIGSTOP/SIGCONT; returns (s to new leader, s to first dispatch, s from the later of
    the stop and that run's slot to its dispatch, s to step-down after SIGCONT)."""
    leader = cluster.wait_for("a leader", cluster.leader, 30)
    old_epoch = int(cluster.cluster_info(leader)["epoch"])
    stopped = time.time()
    cluster.signal(leader, signal.SIGSTOP)
    try:
        new = wait_new_leader(cluster, leader)
        elected = time.time() - stopped
        first = pgsql.first_dispatch(url, _new_epoch(cluster, new, old_epoch), time.time() + 30)
    finally:
        cluster.signal(leader, signal.SIGCONT)
        resumed = time.time()
    cluster.wait_for("the resumed leader to step down", lambda: _rejoined(cluster, leader), 60)
    stepped_down = time.time() - resumed
    time.sleep(settle)
    return (elected, *_after(stopped, first), stepped_down)


def run(env: BenchEnv, opts: Namespace) -> list[Table]:
    extra: dict[str, str] = {}
    if opts.raft_min is not None:
        extra["CHRONORAFT_RAFT_MIN_TIMEOUT"] = str(opts.raft_min)
    if opts.raft_max is not None:
        extra["CHRONORAFT_RAFT_MAX_TIMEOUT"] = str(opts.raft_max)
    elected: list[float] = []
    dispatched: list[float] = []
    dispatched_slot: list[float] = []
    stop_elected: list[float] = []
    stop_dispatched: list[float] = []
    stop_dispatched_slot: list[float] = []
    stepdown: list[float] = []
    lost = 0
    with env.cluster(NAME, workers=2, worker_concurrency=8, extra_env=extra) as (cluster, url):
        leader = cluster.wait_for("a leader", cluster.leader, 30)
        api(
            cluster,
            leader,
            "POST",
            "/api/v1/jobs",
            {"name": "bench-1s", "schedule": "* * * * * *", "command": "true", "args": []},
        )
        time.sleep(3)
        for i in range(opts.kills):
            up, first, from_slot = kill_once(cluster, url, opts.settle)
            elected.append(up)
            if first is None or from_slot is None:
                lost += 1
            else:
                dispatched.append(first)
                dispatched_slot.append(from_slot)
            progress(
                f"kill {i + 1}/{opts.kills}: leader {up:.3f}s, first dispatch {_s(first)} "
                f"({_s(from_slot)} from the kill or its slot)"
            )
        for i in range(opts.stops):
            up, first, from_slot, down = stop_once(cluster, url, opts.settle)
            stop_elected.append(up)
            stepdown.append(down)
            if first is None or from_slot is None:
                lost += 1
            else:
                stop_dispatched.append(first)
                stop_dispatched_slot.append(from_slot)
            progress(
                f"stop {i + 1}/{opts.stops}: leader {up:.3f}s, first dispatch {_s(first)} "
                f"({_s(from_slot)} from the stop or its slot)"
            )
    table = Table(
        "Failover: leader SIGKILL / SIGSTOP with a `* * * * * *` job",
        ["metric (s)", "n", "min", "median", "p99", "max"],
    )
    for label, values in (
        ("SIGKILL -> new leader reports", elected),
        ("SIGKILL -> first dispatch by new epoch", dispatched),
        ("  from the kill or its slot, if later", dispatched_slot),
        ("SIGSTOP -> new leader reports", stop_elected),
        ("SIGSTOP -> first dispatch by new epoch", stop_dispatched),
        ("  from the stop or its slot, if later", stop_dispatched_slot),
        ("SIGCONT -> old leader stepped down", stepdown),
    ):
        s = summarize(values)
        table.add(label, s.n, s.min, s.median, s.p99, s.max)
    table.note(
        "new leader reports = first time another controller's /api/v1/cluster says it leads "
        "(polled every 20 ms); first dispatch = min(runs.dispatched_at) of the new epoch; "
        "'from ... its slot, if later' leaves out the wait for a slot that came due after "
        "the fault (the job fires each second: if the old leader had just dispatched one, "
        "the next is up to 1 s away however fast the failover)"
    )
    raft = f"raft timeouts {opts.raft_min or 'default'}/{opts.raft_max or 'default'}"
    table.note(f"{opts.kills} kills, {opts.stops} stops, {opts.settle:g}s settle, {raft}")
    if lost:
        table.note(f"{lost} faults with no dispatch by the new epoch within 30 s")
    return [table]


def main() -> int:
    """Backwards-compatible entry point: ``python -m bench.failover [--kills N]``."""
    from bench.__main__ import main as bench_main

    return bench_main(["--only", "failover", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
