"""``chronoraft jobs list|create|show|pause|resume|trigger|delete``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from common.durations import format_duration
from controller.cli_client import tables
from controller.cli_client.client import ApiClient
from controller.cli_client.common import InputError, emit, run

# --flag -> job field, for the flags that carry a value unchanged.
SCALAR_FLAGS = {
    "name": "name",
    "schedule": "schedule",
    "command": "command",
    "timezone": "timezone",
    "description": "description",
    "cwd": "cwd",
    "timeout": "timeout",
    "max_retries": "max_retries",
    "retry_backoff": "retry_backoff",
    "catchup_window": "catchup_window",
    "catchup": "catchup",
    "overlap": "overlap",
    "max_concurrency": "max_concurrency",
}


def ref(value: str) -> str:
    return quote(value, safe="")


def job_rows(items: list[dict[str, Any]]) -> str:
    rows = []
    for job in items:
        last = job.get("last_run")
        rows.append(
            (
                job["id"],
                job["name"],
                job["schedule"] + ("" if job["timezone"] == "UTC" else f" ({job['timezone']})"),
                "paused" if job["paused"] else "active",
                tables.when(job.get("next_run_at")),
                f"{last['state']} #{last['id']}" if last else None,
            )
        )
    return tables.table(("ID", "NAME", "SCHEDULE", "STATUS", "NEXT RUN", "LAST RUN"), rows)


def render_job(job: dict[str, Any]) -> str:
    """A job's settings are durations it was given (``5m``, ``10s``), so they are shown in the
    spelling the API accepts, not rounded like a measured duration (``10.0s``)."""
    command = " ".join([job["command"], *job["args"]]) if job.get("args") else job["command"]
    counters = job.get("counters") or {}
    return tables.fields(
        [
            ("id", job["id"]),
            ("name", job["name"]),
            ("status", "paused" if job["paused"] else "active"),
            ("schedule", f"{job['schedule']} ({job['timezone']})"),
            ("next run", tables.when(job.get("next_run_at"))),
            ("command", command),
            ("timeout", format_duration(job["timeout"]) if job.get("timeout") else "none"),
            ("retries", f"{job['max_retries']} (backoff {format_duration(job['retry_backoff'])})"),
            ("overlap", job.get("overlap")),
            ("catchup", f"{job.get('catchup')} within {format_duration(job['catchup_window'])}"),
            ("labels", tables.labels(job.get("labels"))),
            ("env", tables.labels(job.get("env"))),
            ("description", job.get("description")),
            ("counters", ", ".join(f"{k} {v}" for k, v in counters.items())),
            ("version", job.get("version")),
        ]
    )


def cmd_list(client: ApiClient, args: argparse.Namespace) -> int:
    page = client.get(
        "jobs",
        {"status": args.status, "q": args.search, "limit": args.limit, "offset": args.offset},
    )
    emit(args, page, lambda p: job_rows(p["items"]) + f"\n{p['total']} job(s)")
    return 0


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    result = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} {item!r}: expected KEY=VALUE")
        result[key] = value
    return result


def _read_job_file(name: str) -> dict[str, Any]:
    """The JSON object in ``name`` (``-``: stdin); InputError names the file and the fault."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--file {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"--file {name}: not UTF-8 text: {exc.reason}") from None
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--file {name}: not JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise InputError(f"--file {name}: must hold one JSON object")
    return loaded


def job_body(args: argparse.Namespace) -> dict[str, Any]:
    """``--file`` (a JSON job object) first, then every flag given on top of it."""
    body: dict[str, Any] = {}
    if args.file:
        body.update(_read_job_file(args.file))
    for flag, key in SCALAR_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            body[key] = value
    if args.arg is not None:
        body["args"] = args.arg
    if args.env:
        body["env"] = {**body.get("env", {}), **_pairs(args.env, "--env")}
    if args.label:
        body["labels"] = {**body.get("labels", {}), **_pairs(args.label, "--label")}
    if args.paused:
        body["paused"] = True
    return body


def cmd_create(client: ApiClient, args: argparse.Namespace) -> int:
    job = client.post("jobs", job_body(args))
    emit(args, job, lambda j: f"created job {j['name']} (id {j['id']})\n" + render_job(j))
    return 0


def cmd_show(client: ApiClient, args: argparse.Namespace) -> int:
    emit(args, client.get(f"jobs/{ref(args.job)}"), render_job)
    return 0


def cmd_pause(client: ApiClient, args: argparse.Namespace) -> int:
    job = client.post(f"jobs/{ref(args.job)}/pause")
    emit(args, job, lambda j: f"paused {j['name']}")
    return 0


def cmd_resume(client: ApiClient, args: argparse.Namespace) -> int:
    job = client.post(f"jobs/{ref(args.job)}/resume")
    emit(args, job, lambda j: f"resumed {j['name']}: next run {tables.when(j['next_run_at'])}")
    return 0


def cmd_trigger(client: ApiClient, args: argparse.Namespace) -> int:
    run_ = client.post(f"jobs/{ref(args.job)}/trigger")
    emit(
        args,
        run_,
        lambda r: (
            f"triggered {r['job_name']}: run {r['id']} ({r['state']}); "
            f"follow it with: chronoraft runs tail {r['id']}"
        ),
    )
    return 0


def cmd_delete(client: ApiClient, args: argparse.Namespace) -> int:
    result = client.delete(f"jobs/{ref(args.job)}")
    emit(args, result, lambda r: f"deleted job {r['deleted']} (its run history stays)")
    return 0


def add_parser(sub: Any, parent: argparse.ArgumentParser) -> None:
    jobs = sub.add_parser("jobs", help="list, create, show, pause, resume, trigger, delete jobs")
    actions = jobs.add_subparsers(dest="action", required=True)

    p = actions.add_parser("list", parents=[parent], help="jobs with next and last run")
    p.add_argument("--status", choices=["active", "paused"])
    p.add_argument("--search", help="part of the name")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(func=run(cmd_list))

    p = actions.add_parser(
        "create", parents=[parent], help="create a job from flags and/or --file job.json"
    )
    p.add_argument("--file", help="JSON job object ('-' reads stdin); flags override its fields")
    p.add_argument("--name")
    p.add_argument("--schedule", help="cron (5 or 6 fields), @every 5s, @hourly, ...")
    p.add_argument("--command", help="shell command, or the executable when --arg is given")
    p.add_argument("--arg", action="append", help="an argument (repeatable): no shell then")
    p.add_argument("--timezone", help="IANA zone (default UTC)")
    p.add_argument("--description")
    p.add_argument("--env", action="append", metavar="KEY=VALUE")
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="worker selector")
    p.add_argument("--cwd")
    p.add_argument("--timeout", help="duration: 30, 90s, 5m, 1h30m")
    p.add_argument("--max-retries", type=int)
    p.add_argument("--retry-backoff", help="duration")
    p.add_argument("--catchup-window", help="duration")
    p.add_argument("--catchup", help="all, latest or none")
    p.add_argument("--overlap", help="allow, skip, buffer_one, buffer_all, cancel_other")
    p.add_argument("--max-concurrency", type=int)
    p.add_argument("--paused", action="store_true", help="create it paused")
    p.set_defaults(func=run(cmd_create))

    for name, handler, text in (
        ("show", cmd_show, "one job in full"),
        ("pause", cmd_pause, "stop firing until resumed"),
        ("resume", cmd_resume, "fire again from the next slot"),
        ("trigger", cmd_trigger, "run once now"),
        ("delete", cmd_delete, "delete (the run history stays)"),
    ):
        p = actions.add_parser(name, parents=[parent], help=text)
        p.add_argument("job", help="job name or id")
        p.set_defaults(func=run(handler))
