"""``chronoraft runs list|show|tail``: the run history, one run, and following a run live."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from common.states import TERMINAL, RunState
from controller.cli_client import tables
from controller.cli_client.client import ApiClient, ApiError
from controller.cli_client.common import emit, run
from controller.cli_client.jobs import ref

FINAL = {s.value for s in TERMINAL}
"""States ``runs tail`` stops at; upstream_failed too, or it would follow such a node forever."""


def run_rows(items: list[dict[str, Any]]) -> str:
    rows = [
        (
            r["id"],
            r["job_name"],
            tables.when(r["scheduled_for"]),
            r["trigger"],
            r["state"],
            r["attempt"],
            r["worker_id"],
            r["epoch"],
            tables.duration(r["duration_seconds"]),
        )
        for r in items
    ]
    headers = ("ID", "JOB", "SLOT", "TRIGGER", "STATE", "ATTEMPT", "WORKER", "EPOCH", "DURATION")
    return tables.table(headers, rows)


def render_run(r: dict[str, Any]) -> str:
    head = tables.fields(
        [
            ("run", r["id"]),
            ("job", f"{r['job_name']} (id {r['job_id']})"),
            ("state", r["state"]),
            ("slot", tables.when(r["scheduled_for"]) + (" (late)" if r["late"] else "")),
            ("trigger", r["trigger"]),
            ("attempt", f"{r['attempt']} of {r['max_retries'] + 1}"),
            ("worker", r["worker_id"]),
            ("epoch", r["epoch"]),
            ("started", tables.when(r["started_at"])),
            ("finished", tables.when(r["finished_at"])),
            ("duration", tables.duration(r["duration_seconds"])),
            ("exit code", r["exit_code"]),
            ("error", r["error"]),
        ]
    )
    attempts = tables.table(
        ("ATTEMPT", "STATE", "WORKER", "EPOCH", "EXIT", "ERROR"),
        [
            (a["attempt"], a["state"], a["worker_id"], a["epoch"], a["exit_code"], a["error"])
            for a in r.get("attempts", [])
        ],
    )
    output = r.get("output") or ""
    if r.get("output_truncated"):
        output += "\n[output truncated: the tail is kept]"
    return f"{head}\n\n{attempts}\n\noutput:\n{output or '(none)'}"


def cmd_list(client: ApiClient, args: argparse.Namespace) -> int:
    job_id = args.job
    if job_id is not None and not job_id.isdigit():
        job_id = client.get(f"jobs/{ref(job_id)}")["id"]
    page = client.get(
        "runs",
        {
            "job_id": job_id,
            "state": args.state,
            "since": args.since,
            "until": args.until,
            "limit": args.limit,
            "offset": args.offset,
        },
    )
    emit(args, page, lambda p: run_rows(p["items"]) + f"\n{len(p['items'])} of {p['total']} run(s)")
    return 0


def cmd_show(client: ApiClient, args: argparse.Namespace) -> int:
    emit(args, client.get(f"runs/{args.run}"), render_run)
    return 0


def _events(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """What changed between two looks at a run: its state, and attempts that ended."""
    events = []
    if old is None or (old["state"], old["attempt"]) != (new["state"], new["attempt"]):
        where = f" on {new['worker_id']} (epoch {new['epoch']})" if new["worker_id"] else ""
        events.append(
            {"event": "state", "state": new["state"], "attempt": new["attempt"], "where": where}
        )
    seen = {a["attempt"]: a["state"] for a in (old or {}).get("attempts", [])}
    for a in new.get("attempts", []):
        if a["finished_at"] and seen.get(a["attempt"]) != a["state"]:
            events.append(
                {
                    "event": "attempt",
                    "attempt": a["attempt"],
                    "state": a["state"],
                    "exit_code": a["exit_code"],
                    "error": a["error"],
                    "output": a["output"] or "",
                }
            )
    return events


def _print_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(event), flush=True)
        return
    stamp = time.strftime("%H:%M:%S")
    if event["event"] == "state":
        print(f"{stamp} {event['state']} (attempt {event['attempt']}){event['where']}", flush=True)
        return
    detail = f"exit {event['exit_code']}" if event["exit_code"] is not None else ""
    if event["error"]:
        detail = f"{detail}; {event['error']}" if detail else event["error"]
    print(f"{stamp} attempt {event['attempt']} {event['state']} {detail}".rstrip(), flush=True)
    for line in event["output"].splitlines():
        print(f"  | {line}", flush=True)


def cmd_tail(client: ApiClient, args: argparse.Namespace) -> int:
    """Poll the run until it is final; exit 0 only when it succeeded."""
    deadline = time.monotonic() + args.timeout if args.timeout else None
    last: dict[str, Any] | None = None
    while True:
        try:
            current = client.get(f"runs/{args.run}")
        except ApiError as exc:
            if exc.status not in (0, 503):  # a controller or PostgreSQL away: keep following
                raise
            current = last
        if current is not None:
            for event in _events(last, current):
                _print_event(event, args.json)
            last = current
            if current["state"] in FINAL:
                return 0 if current["state"] == "succeeded" else 1
        if deadline is not None and time.monotonic() > deadline:
            state = last["state"] if last else "unknown"
            print(f"error: run {args.run} still {state} after {args.timeout:g}s", file=sys.stderr)
            return 124
        time.sleep(args.interval)


def add_parser(sub: Any, parent: argparse.ArgumentParser) -> None:
    runs = sub.add_parser("runs", help="list, show and follow runs")
    actions = runs.add_subparsers(dest="action", required=True)

    p = actions.add_parser("list", parents=[parent], help="the run history, newest first")
    p.add_argument("--job", help="job name or id")
    p.add_argument("--state", help=", ".join(s.value for s in RunState))
    p.add_argument("--since", help="RFC 3339 time, e.g. 2026-01-01T00:00:00Z")
    p.add_argument("--until", help="RFC 3339 time")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(func=run(cmd_list))

    p = actions.add_parser("show", parents=[parent], help="one run: attempts and output")
    p.add_argument("run", type=int)
    p.set_defaults(func=run(cmd_show))

    p = actions.add_parser(
        "tail", parents=[parent], help="follow a run until it finishes (exit 0 if it succeeded)"
    )
    p.add_argument("run", type=int)
    p.add_argument("--interval", type=float, default=0.5, help="seconds between looks")
    p.add_argument("--timeout", type=float, default=0, help="give up after this (0: never)")
    p.set_defaults(func=run(cmd_tail))
