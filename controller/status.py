"""``chronoraft status``: each controller's own view, as a table (or JSON)."""

from __future__ import annotations

import json
import os

from controller.local_cluster import http_json

DEFAULT_URLS = ["http://127.0.0.1:8080", "http://127.0.0.1:8081", "http://127.0.0.1:8082"]


def print_status(urls: list[str] | None, as_json: bool = False) -> int:
    env_url = os.environ.get("CHRONORAFT_URL")
    targets = urls or ([u.strip() for u in env_url.split(",")] if env_url else DEFAULT_URLS)
    views = []
    for url in targets:
        try:
            status, body = http_json("GET", url.rstrip("/") + "/api/v1/cluster", timeout=3)
        except OSError as exc:
            views.append({"url": url, "error": str(exc)})
            continue
        views.append({"url": url, "status": status, "body": body})
    if as_json:
        print(json.dumps(views, indent=2))
        return 0 if any(v.get("status") == 200 for v in views) else 1
    print(f"{'URL':<24} {'NODE':<6} {'ROLE':<10} {'PID':>7} {'TERM':>5} {'LEADER':<8} EPOCH")
    ok = False
    workers: list[dict] = []
    for view in views:
        body = view.get("body")
        if view.get("status") != 200 or not isinstance(body, dict):
            print(f"{view['url']:<24} unreachable: {view.get('error') or view.get('status')}")
            continue
        ok = True
        node, leader = body["node"], body["leader"]
        print(
            f"{view['url']:<24} {node['id']:<6} {node['role']:<10} {node['pid']:>7} "
            f"{body['raft']['term']:>5} {str(leader['node_id']):<8} {leader['epoch']}"
        )
        workers = body["workers"] or workers
    print()
    print(f"{'WORKER':<10} {'ADDRESS':<22} {'RUNNING':>7} {'CAPACITY':>8} LABELS")
    for w in workers:
        labels = ",".join(f"{k}={v}" for k, v in (w["labels"] or {}).items())
        print(f"{w['id']:<10} {w['address']:<22} {w['running']:>7} {w['capacity']:>8} {labels}")
    return 0 if ok else 1
