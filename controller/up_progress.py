"""What ``chronoraft up`` prints while the cluster comes up, and its table once it is ready."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from controller.cli_client import tables
from controller.local_cluster import ClusterError, LocalCluster, Node


def _progress(cluster: LocalCluster) -> tuple[str, str | None]:
    """One line of progress (controllers answering, leader, workers registered) and the leader."""
    answering = 0
    leader: str | None = None
    registered: set[str] = set()
    for name in cluster.controller_names:
        info = cluster.cluster_info(name, timeout=1.0)
        if info is None:
            continue
        answering += 1
        registered |= {w["id"] for w in info["workers"]}
        if info["node"]["role"] == "leader" and info["node"]["leading_epoch"]:
            leader = name
    workers = [n for n in cluster.worker_names if cluster.nodes[n].alive()]
    line = (
        f"controllers answering {answering}/{len(cluster.controller_names)}, "
        f"leader {leader or 'not yet elected'}, "
        f"workers registered {len(registered & set(workers))}/{len(workers)}"
    )
    return line, leader


def wait_with_progress(cluster: LocalCluster, timeout: float, say: Callable[[str], None]) -> str:
    """Print each change of the progress line until every node is up; returns the leader."""
    deadline = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < deadline:
        for name, node in cluster.nodes.items():
            if node.proc is not None and node.proc.poll() is not None:
                raise ClusterError(f"{name} exited with {node.proc.returncode}")
        line, leader = _progress(cluster)
        if line != shown:
            say(line)
            shown = line
        if leader is not None and line.endswith(_all_workers(cluster)):
            return cluster.wait_ready(timeout=max(1.0, deadline - time.monotonic()))
        time.sleep(0.3)
    raise ClusterError(f"not ready after {timeout:g}s: {shown}")


def _all_workers(cluster: LocalCluster) -> str:
    alive = sum(1 for n in cluster.worker_names if cluster.nodes[n].alive())
    return f"{alive}/{alive}"


def status_table(cluster: LocalCluster) -> str:
    """Every node: kind, role, pid, URL; workers with their load as the leader sees it."""
    views: dict[str, dict[str, Any]] = {}
    for name in cluster.controller_names:
        info = cluster.cluster_info(name) if cluster.nodes[name].alive() else None
        if info is not None:
            views[name] = info
    fleet = {w["id"]: w for view in views.values() for w in view["workers"]}
    rows = []
    for name in cluster.controller_names:
        node = cluster.nodes[name]
        role = _down(node) or (views[name]["node"]["role"] if name in views else "unreachable")
        rows.append((name, "controller", role, _pid(node), node.url, None))
    for name in cluster.worker_names:
        node = cluster.nodes[name]
        w = fleet.get(name)
        load = _down(node) or (f"{w['running']}/{w['capacity']} running" if w else "not registered")
        rows.append((name, "worker", None, _pid(node), f"{node.url}/metrics", load))
    return tables.table(("NODE", "KIND", "ROLE", "PID", "URL", "LOAD"), rows)


def _down(node: Node) -> str:
    """Why a node cannot answer (down, or paused by SIGSTOP); "" for a running one."""
    if not node.alive():
        return "down"
    return "paused" if node.paused() else ""


def _pid(node: Node) -> int | None:
    return node.pid if node.alive() else None
