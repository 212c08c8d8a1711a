"""``chronoraft dags list|show|run|runs``: DAG definitions and their runs."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from controller.cli_client import tables
from controller.cli_client.client import ApiClient, ApiError
from controller.cli_client.common import emit, run
from controller.cli_client.jobs import ref


def dag_rows(items: list[dict[str, Any]]) -> str:
    rows = []
    for d in items:
        latest = d.get("latest_run")
        rows.append(
            (
                d["id"],
                d["namespace"],
                d["name"],
                d["version"],
                d.get("schedule") or "manual",
                f"{latest['state']} #{latest['id']}" if latest else None,
            )
        )
    return tables.table(("ID", "NAMESPACE", "NAME", "VERSION", "SCHEDULE", "LATEST RUN"), rows)


def render_dag(d: dict[str, Any]) -> str:
    head = tables.fields(
        [
            ("dag", f"{d['namespace']}/{d['name']} (id {d['id']}, version {d['version']})"),
            ("schedule", f"{d.get('schedule') or 'manual'} ({d.get('timezone') or 'UTC'})"),
            ("description", d.get("description")),
            ("created", tables.when(d.get("created_at"))),
        ]
    )
    jobs = tables.table(
        ("JOB", "NAME", "DEFINITION", "PRIORITY"),
        [
            (j["id"], j["name"], f"{j['definition_id']} v{j['definition_version']}", j["priority"])
            for j in d.get("jobs", [])
        ],
    )
    edges = "\n".join(
        f"  {e['parent_name']} -> {e['child_name']}"
        + (" (order-only)" if e["dependency_type"] == "order-only" else "")
        for e in d.get("dependencies", [])
    )
    return f"{head}\n\n{jobs}\n\nedges:\n{edges or '  (none)'}"


def dag_run_rows(items: list[dict[str, Any]]) -> str:
    rows = [
        (
            r["id"],
            r["state"],
            r["trigger"],
            tables.when(r["created_at"]),
            tables.when(r["finished_at"]),
        )
        for r in items
    ]
    return tables.table(("RUN", "STATE", "TRIGGER", "CREATED", "FINISHED"), rows)


def render_dag_run(r: dict[str, Any]) -> str:
    head = (
        f"dag run {r['id']} of {r['namespace']}/{r['dag_name']} v{r['dag_version']}: {r['state']}"
    )
    nodes = tables.table(
        ("NODE", "STATE", "ATTEMPT", "RUN", "EXIT", "ERROR"),
        [
            (n["name"], n["state"], n["attempt"], n["run_id"], n["exit_code"], n["error"])
            for n in r.get("nodes", [])
        ],
    )
    return f"{head}\n{nodes}"


def cmd_list(client: ApiClient, args: argparse.Namespace) -> int:
    page = client.get("dags", {"namespace": args.namespace, "limit": args.limit})
    emit(args, page, lambda p: dag_rows(p["items"]) + f"\n{p['total'] or 0} DAG(s)")
    return 0


def cmd_show(client: ApiClient, args: argparse.Namespace) -> int:
    emit(args, client.get(f"dags/{ref(args.dag)}"), render_dag)
    return 0


def cmd_runs(client: ApiClient, args: argparse.Namespace) -> int:
    page = client.get(f"dags/{ref(args.dag)}/runs", {"limit": args.limit})
    emit(args, page, lambda p: dag_run_rows(p["items"]))
    return 0


def cmd_run(client: ApiClient, args: argparse.Namespace) -> int:
    body = {"idempotency_key": args.idempotency_key} if args.idempotency_key else {}
    made = client.post(f"dags/{ref(args.dag)}/runs", body)
    if not args.follow:
        emit(args, made, lambda r: f"started dag run {r['id']} ({r['state']})")
        return 0
    return follow(client, made["id"], args)


def follow(client: ApiClient, run_id: int, args: argparse.Namespace) -> int:
    """Print each node's state changes until the DAG run is final; exit 0 if it succeeded."""
    seen: dict[str, str] = {}
    while True:
        try:
            current = client.get(f"dag-runs/{run_id}")
        except ApiError as exc:
            if exc.status not in (0, 503):
                raise
            time.sleep(args.interval)
            continue
        for node in current.get("nodes", []):
            if seen.get(node["name"]) != node["state"]:
                seen[node["name"]] = node["state"]
                event = {"dag_run": run_id, "node": node["name"], "state": node["state"]}
                print(
                    json.dumps(event)
                    if args.json
                    else f"{time.strftime('%H:%M:%S')} {node['name']}: {node['state']}",
                    flush=True,
                )
        if current["state"] != "running":
            if not args.json:
                print(f"dag run {run_id}: {current['state']}")
            return 0 if current["state"] == "succeeded" else 1
        time.sleep(args.interval)


def add_parser(sub: Any, parent: argparse.ArgumentParser) -> None:
    dags = sub.add_parser("dags", help="list and show DAGs, start and list their runs")
    actions = dags.add_subparsers(dest="action", required=True)

    p = actions.add_parser("list", parents=[parent], help="DAGs with their latest run")
    p.add_argument("--namespace")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=run(cmd_list))

    p = actions.add_parser("show", parents=[parent], help="one DAG: jobs and edges")
    p.add_argument("dag", help="DAG id")
    p.set_defaults(func=run(cmd_show))

    p = actions.add_parser("run", parents=[parent], help="start a run of a DAG now")
    p.add_argument("dag", help="DAG id")
    p.add_argument("--idempotency-key", help="a repeat with the same key starts nothing new")
    p.add_argument("--follow", action="store_true", help="follow it until it finishes")
    p.add_argument("--interval", type=float, default=0.5)
    p.set_defaults(func=run(cmd_run))

    p = actions.add_parser("runs", parents=[parent], help="a DAG's runs, newest first")
    p.add_argument("dag", help="DAG id")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=run(cmd_runs))
