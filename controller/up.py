"""``chronoraft up``: PostgreSQL + 3 controllers + workers + example jobs on this machine.

Uses ``CHRONORAFT_DATABASE_URL`` when set; otherwise starts a private PostgreSQL from the
system's ``initdb``/``pg_ctl`` under the base directory and stops it on exit.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

from common import db
from common.pgserver import PgServer, PgServerError
from controller.local_cluster import ClusterError, LocalCluster, http_json
from controller.up_control import (
    DEFAULT_BASE_DIR,
    ControlServer,
    NodeControl,
    another_up_running,
    describe_exit,
    request,
)
from controller.up_progress import status_table, wait_with_progress

EXAMPLE_JOBS = [
    {
        "name": "hello-every-5s",
        "description": "Says hello every five seconds",
        "schedule": "@every 5s",
        "command": "echo hello from $(hostname) at $(date -u +%H:%M:%S)",
    },
    {
        "name": "tick-10s",
        "description": "Six-field cron with seconds",
        "schedule": "*/10 * * * * *",
        "command": "date",
        "args": ["-u", "+%Y-%m-%dT%H:%M:%SZ"],
    },
    {
        "name": "disk-usage",
        "description": "Every minute, with a timeout and retries",
        "schedule": "* * * * *",
        "command": "df -h /",
        "timeout": "30s",
        "max_retries": 2,
        "retry_backoff": "5s",
    },
    {
        "name": "nightly-report",
        "description": "02:30 Berlin time, DST aware",
        "schedule": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "command": "echo nightly report",
    },
]


def _say(message: str) -> None:
    print(f"chronoraft up: {message}", flush=True)


def seed_examples(base_url: str, token: str) -> None:
    for job in EXAMPLE_JOBS:
        status, body = http_json("POST", f"{base_url}/api/v1/jobs", job, token=token)
        if status == 201:
            _say(f"created example job {job['name']!r} ({job['schedule']})")
        elif status != 409:
            _say(f"could not create {job['name']!r}: {status} {body}")


def run_up(args: argparse.Namespace) -> int:
    if args.action:
        return request(args.base_dir, args.action, args.node)
    base = Path(args.base_dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    if another_up_running(base):
        _say(f"another chronoraft up is running with base dir {base}; stop it first (Ctrl-C)")
        return 1
    url = os.environ.get("CHRONORAFT_DATABASE_URL", "")
    pg: PgServer | None = None
    if not url:
        _say("starting a private PostgreSQL (initdb/pg_ctl) ...")
        pg = PgServer.create(str(base / "postgres"))
        try:
            pg.start()
        except PgServerError as exc:
            _say(f"cannot start PostgreSQL: {exc}")
            return 1
        url = pg.url
        _say(f"PostgreSQL ready at {url}")
    db.migrate(url)
    cluster = LocalCluster(
        base_dir=base,
        database_url=url,
        controllers=args.controllers,
        workers=args.workers,
        http_base=args.http_base,
        raft_base=args.raft_base,
        grpc_base=args.grpc_base,
        worker_base=args.worker_base,
        worker_http_base=args.worker_http_base,
        raft_password=os.environ.get("CHRONORAFT_RAFT_PASSWORD", "chronoraft-dev-password"),
    )
    stopping = threading.Event()
    control: ControlServer | None = None

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        _say(f"starting {args.controllers} controllers and {args.workers} workers ...")
        cluster.start_all()
        started = time.monotonic()
        try:
            leader = wait_with_progress(cluster, 90, _say)
        except ClusterError as exc:
            _say(f"cluster did not become ready: {exc}")
            for name in cluster.nodes:
                print(f"--- {name} ---\n{cluster.tail(name)}", file=sys.stderr)
            return 1
        if not args.no_examples:
            seed_examples(cluster.url(leader), cluster.admin_token)
        elapsed = time.monotonic() - started
        _say(f"ready in {elapsed:.1f}s. leader: {leader} (pid {cluster.nodes[leader].pid})")
        print(status_table(cluster))
        print(f"  dashboard: {cluster.url('c1')}/   API docs: {cluster.url('c1')}/api/docs")
        print(f"  logs: {base / 'logs'}")
        print(f"  admin token: {cluster.admin_token}   (writes; the dashboard asks for one)")
        print(f"  read token:  {cluster.read_token}   (reads only)")
        print(f"  export CHRONORAFT_TOKEN={cluster.admin_token}")
        print(
            f'  try:  curl -s -H "Authorization: Bearer $CHRONORAFT_TOKEN" '
            f"{cluster.url('c1')}/api/v1/cluster"
        )
        nodes = NodeControl(cluster, threading.Lock())
        this_up = "./dev up" + _base_dir_flag(args)
        try:
            control = ControlServer(base, nodes)
        except OSError as exc:  # e.g. a base dir path too long for a Unix socket
            _say(f"no node control ({exc}): nodes cannot be restarted one by one")
        else:
            control.start()
            print(f"  {this_up} stop|start|restart <node>   (another terminal) one node")
        print("  Ctrl-C stops everything.", flush=True)
        _watch(nodes, stopping, args.exit_after, this_up)
    finally:
        _say("stopping ...")
        if control is not None:
            control.close()
        cluster.stop_all()
        if pg is not None:
            pg.stop()
        _say("stopped")
    return 0


def _base_dir_flag(args: argparse.Namespace) -> str:
    return "" if args.base_dir == DEFAULT_BASE_DIR else f" --base-dir {args.base_dir}"


def _watch(
    nodes: NodeControl, stopping: threading.Event, exit_after: float | None, this_up: str
) -> None:
    """Until Ctrl-C (or ``exit_after``): say when a node ends that no request stopped, so a
    ``kill -9`` shows here with the command that brings the node back."""
    deadline = math.inf if exit_after is None else time.monotonic() + exit_after
    while not stopping.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            return
        for name, pid, code in nodes.exits():
            again = f"`{this_up} start {name}` starts it again"
            _say(f"{name} (pid {pid}) ended: {describe_exit(code)}; {again}")
