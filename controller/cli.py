"""``chronoraft`` command line: controller, worker, up, migrate, demo, chaos, and the API
client commands jobs, runs, dags, cluster (and status) from controller/cli_client/.

Flags override ``CHRONORAFT_*`` environment variables, which override built-in defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from common.secure_start import Role, check_start
from common.settings import Settings, SettingsError, parse_labels
from controller.cli_client import cluster as cli_cluster
from controller.cli_client import dags as cli_dags
from controller.cli_client import jobs as cli_jobs
from controller.cli_client import runs as cli_runs
from controller.cli_client.common import client_options
from controller.up_control import ACTIONS, DEFAULT_BASE_DIR


def _settings(args: argparse.Namespace, **mapping: str) -> Settings:
    """Environment settings with the given flag -> field overrides applied."""
    base = Settings.from_env()
    changes: dict[str, Any] = {}
    for flag, field in mapping.items():
        value = getattr(args, flag, None)
        if value is not None:
            changes[field] = value
    return base.with_overrides(**changes)


def _refuse_unprotected(settings: Settings, role: Role) -> None:
    """SettingsError (exit 2) when a secret is missing, unless --insecure-dev; then warn."""
    for missing in check_start(settings, role):
        print(f"chronoraft {role}: INSECURE DEV MODE: {missing}", file=sys.stderr)


def cmd_controller(args: argparse.Namespace) -> int:
    from controller.node import main

    peers = tuple(p for p in (args.raft_peers or "").split(",") if p) if args.raft_peers else None
    settings = _settings(
        args,
        node_id="node_id",
        http_port="http_port",
        grpc_port="grpc_port",
        raft_self="raft_self",
        database_url="database_url",
        data_dir="data_dir",
        insecure_dev="insecure_dev",
    )
    if peers is not None:
        settings = settings.with_overrides(raft_peers=peers)
    _refuse_unprotected(settings, "controller")
    return main(settings)


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.main import main

    settings = _settings(
        args,
        worker_id="worker_id",
        port="worker_port",
        http_port="worker_http_port",
        concurrency="worker_concurrency",
        data_dir="data_dir",
        insecure_dev="insecure_dev",
    )
    if args.labels is not None:
        settings = settings.with_overrides(worker_labels=parse_labels(args.labels))
    if args.controllers is not None:
        settings = settings.with_overrides(
            controllers=tuple(c for c in args.controllers.split(",") if c)
        )
    _refuse_unprotected(settings, "worker")
    return main(settings)


def cmd_migrate(args: argparse.Namespace) -> int:
    from common import db

    settings = _settings(args, database_url="database_url")
    if not settings.database_url:
        print("error: CHRONORAFT_DATABASE_URL or --database-url is required", file=sys.stderr)
        return 2
    applied = db.migrate(settings.database_url)
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from controller.certs import write_dev_certs

    try:
        paths = write_dev_certs(args.out, hosts=args.host or [], days=args.days)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from controller.up import run_up

    return run_up(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from controller.demo import run_demo

    return run_demo(args)


def cmd_chaos(args: argparse.Namespace) -> int:
    from controller.chaos import run_chaos

    return run_chaos(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chronoraft", description="Highly available cron scheduler (Raft + PostgreSQL)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("controller", help="run one controller node")
    p.add_argument("--node-id")
    p.add_argument("--http-port", type=int)
    p.add_argument("--grpc-port", type=int)
    p.add_argument("--raft-self", help="this node's Raft address host:port")
    p.add_argument("--raft-peers", help="the other controllers' Raft addresses, comma separated")
    p.add_argument("--database-url")
    p.add_argument("--data-dir")
    p.add_argument(
        "--insecure-dev",
        action="store_true",
        default=None,
        help="start without API tokens / Raft password / gRPC secret (development only)",
    )
    p.set_defaults(func=cmd_controller)

    p = sub.add_parser("worker", help="run one worker node")
    p.add_argument("--worker-id")
    p.add_argument("--port", type=int, help="gRPC port the leader dials")
    p.add_argument("--http-port", type=int, help="/healthz and /metrics port (0 = off)")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--labels", help="key=value,key=value")
    p.add_argument("--controllers", help="ControllerService addresses, comma separated")
    p.add_argument("--data-dir")
    p.add_argument(
        "--insecure-dev",
        action="store_true",
        default=None,
        help="start without API tokens / Raft password / gRPC secret (development only)",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("certs", help="make a development CA and a node certificate for gRPC TLS")
    p.add_argument("--out", required=True, help="directory for ca.crt, node.crt, node.key, ...")
    p.add_argument(
        "--host",
        action="append",
        help="extra DNS name or IP address the certificate is valid for (repeatable; "
        "localhost, 127.0.0.1 and ::1 are always included)",
    )
    p.add_argument("--days", type=int, default=365, help="validity (default 365)")
    p.set_defaults(func=cmd_certs)

    p = sub.add_parser(
        "up",
        help="start PostgreSQL (if needed), 3 controllers and workers; "
        "`up start|stop|restart NODE`, `up status`: one node of a running `up`",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=ACTIONS,
        help="to a running `chronoraft up` (same --base-dir): start, stop or restart NODE, "
        "or print its status table",
    )
    p.add_argument("node", nargs="?", help="c1, c2, ... or w1, w2, ...")
    p.add_argument("--controllers", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--base-dir", default=DEFAULT_BASE_DIR)
    p.add_argument("--http-base", type=int, default=8080)
    p.add_argument("--raft-base", type=int, default=7000)
    p.add_argument("--grpc-base", type=int, default=9090)
    p.add_argument("--worker-base", type=int, default=50051)
    p.add_argument("--worker-http-base", type=int, default=9100)
    p.add_argument("--no-examples", action="store_true", help="do not create example jobs")
    p.add_argument(
        "--exit-after",
        type=float,
        default=None,
        help="stop everything after this many seconds (for scripted checks)",
    )
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("migrate", help="apply database migrations and exit")
    p.add_argument("--database-url")
    p.set_defaults(func=cmd_migrate)

    client_flags = client_options()
    for client_commands in (cli_jobs, cli_runs, cli_dags, cli_cluster):
        client_commands.add_parser(sub, client_flags)

    p = sub.add_parser("demo", help="guided fault-tolerance demos (failover: SIGKILL the leader)")
    p.add_argument("scenario", choices=["failover"])
    p.add_argument(
        "--url",
        action="append",
        nargs="?",
        const="",
        help="use a running cluster's controllers (repeatable or comma separated; bare "
        "--url: CHRONORAFT_URL or 127.0.0.1:8080-8082); default: start a private one",
    )
    p.add_argument(
        "--token", help="admin API token of the --url cluster (default CHRONORAFT_TOKEN)"
    )
    p.add_argument("--keep", action="store_true", help="leave the private cluster running")
    p.add_argument(
        "--observe", type=float, default=5.0, help="seconds to watch after the kill (default 5)"
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("chaos", help="random faults against a private cluster, then a ledger check")
    p.add_argument("--duration", default="120s", help="fault phase length: 120s, 2m, 90")
    p.add_argument("--jobs", type=int, default=5, help="jobs firing every second")
    p.add_argument("--seed", type=int, help="random seed (printed; default: a random one)")
    p.add_argument("--base-dir", help="logs and ledgers (default .chronoraft/chaos/<time>-<pid>)")
    p.set_defaults(func=cmd_chaos)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # so that a reader gone early shows up here, not at exit
        return code
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _stdout_reader_gone()


def _stdout_reader_gone() -> int:
    """``chronoraft status | head -4``: the reader left, so stop quietly, as ``cat`` would.

    stdout is pointed at /dev/null because Python flushes it again at exit, which would
    raise a second BrokenPipeError (the recipe in the Python docs' "Note on SIGPIPE").
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


if __name__ == "__main__":
    sys.exit(main())
