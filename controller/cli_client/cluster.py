"""``chronoraft cluster status`` (and ``chronoraft status``): every controller's own view.

Each controller is asked separately, so a dead, partitioned or confused node shows as such
instead of being hidden behind the first one that answers.
"""

from __future__ import annotations

import argparse
from typing import Any

from controller.cli_client import tables
from controller.cli_client.client import ApiClient, ApiError
from controller.cli_client.common import emit, run


def gather(client: ApiClient) -> dict[str, Any]:
    views = []
    for url in client.urls:
        one = ApiClient([url], token=client.token, timeout=3.0)
        try:
            views.append({"url": url, "status": 200, "body": one.get("cluster")})
        except ApiError as exc:
            views.append({"url": url, "status": exc.status, "error": str(exc)})
    return {"controllers": views}


def render(data: dict[str, Any]) -> str:
    rows = []
    answering = [v["body"] for v in data["controllers"] if v["status"] == 200]
    for view in data["controllers"]:
        body = view.get("body")
        if body is None:
            rows.append(
                (view["url"], None, f"unreachable: {view['error']}", None, None, None, None)
            )
            continue
        node, leader = body["node"], body["leader"]
        rows.append(
            (
                view["url"],
                node["id"],
                node["role"],
                node["pid"],
                body["raft"]["term"],
                _peers(body.get("peers", [])),
                f"{leader['node_id']} (epoch {leader['epoch']})",
            )
        )
    out = [tables.table(("CONTROLLER", "NODE", "ROLE", "PID", "TERM", "PEERS", "LEADER"), rows)]
    if not answering:
        return out[0]
    latest = max(answering, key=lambda b: b["epoch"] or 0)
    workers = latest["workers"] + latest.get("workers_lost", [])
    out.append(
        tables.table(
            ("WORKER", "ADDRESS", "STATUS", "RUNNING", "CAPACITY", "HEARTBEAT", "LABELS"),
            [
                (
                    w["id"],
                    w["address"],
                    "lost" if not w["alive"] else "draining" if w["draining"] else "alive",
                    w["running"],
                    w["capacity"],
                    tables.when(w["last_heartbeat"]),
                    tables.labels(w["labels"]),
                )
                for w in workers
            ],
        )
    )
    history = latest.get("leadership_history", [])[:5]
    out.append(
        tables.table(
            ("EPOCH", "LEADER", "CLAIMED"),
            [(h["epoch"], h["node_id"], tables.when(h["claimed_at"])) for h in history],
        )
    )
    return "\n\n".join(out)


def _peers(peers: list[dict[str, Any]]) -> str:
    """``2/2 connected``: what a rolling restart waits for before it stops the next node."""
    connected = sum(1 for peer in peers if peer.get("connected"))
    return f"{connected}/{len(peers)} connected"


def cmd_status(client: ApiClient, args: argparse.Namespace) -> int:
    data = gather(client)
    emit(args, data, render)
    return 0 if any(v["status"] == 200 for v in data["controllers"]) else 1


def add_parser(sub: Any, parent: argparse.ArgumentParser) -> None:
    cluster = sub.add_parser("cluster", help="the cluster: controllers, leader, workers")
    actions = cluster.add_subparsers(dest="action", required=True)
    p = actions.add_parser(
        "status", parents=[parent], help="each controller's view, workers and recent leaders"
    )
    p.set_defaults(func=run(cmd_status))

    p = sub.add_parser("status", parents=[parent], help="the same as 'cluster status'")
    p.set_defaults(func=run(cmd_status))
