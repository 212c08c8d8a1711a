#!/usr/bin/env python3
"""The DAG tour: build a three-step workflow through the REST API, run it and watch it.

    Wait (sleep 1 s)  ->  Wait5s (sleep 5 s)  ->  Wait10s (sleep 10 s)

Each step is a versioned *definition*, placed in a *DAG* as a job; *dependencies* (edges)
order the jobs; a *DAG run* executes them on the workers, each job once its parents have
succeeded. The script prints every node's state change as it sees it, then a table of the
times the controllers recorded, and exits 0 only when the run succeeded.

It uses the standard library alone, so it runs anywhere Python 3.11 does, against any
chronoraft cluster:

    python3 examples/dag_demo.py                       # the cluster of ./dev up
    python3 examples/dag_demo.py --url http://10.0.0.5:8080,http://10.0.0.6:8080 \\
        --token "$ADMIN_TOKEN" --namespace tour --time-scale 0.2

Names get a random suffix, so it can run again and again against one cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from typing import Any

STEPS = (("Wait", 1.0), ("Wait5s", 5.0), ("Wait10s", 10.0))
"""(job name, seconds of sleep), in dependency order: each step waits for the one before."""
FINAL = {"succeeded", "failed", "cancelled", "skipped"}
"""DAG run states that end the watch."""
POLL_SECONDS = 0.25


class ApiError(Exception):
    """The cluster answered with an error, or no controller answered at all (status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}" if status else message)
        self.status = status


class Api:
    """JSON over HTTP to the first controller that answers; every controller serves the
    same API, so when one goes away (a leader kill, say) the next URL takes over."""

    def __init__(self, urls: list[str], token: str) -> None:
        self.urls = urls
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        unreachable = []
        for i, base in enumerate(self.urls):
            request = urllib.request.Request(base + "/api/v1" + path, data=data, method=method)
            request.add_header("Accept", "application/json")
            if data is not None:
                request.add_header("Content-Type", "application/json")
            if self.token:
                request.add_header("Authorization", f"Bearer {self.token}")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    if i:  # remember the controller that answered
                        self.urls = self.urls[i:] + self.urls[:i]
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                raise ApiError(exc.code, _error_message(exc.read())) from None
            except OSError as exc:
                reason = getattr(exc, "reason", exc)
                unreachable.append(f"{base}: {reason}")
                if method != "GET" and not isinstance(reason, ConnectionRefusedError):
                    break  # a write may have arrived; sending it again could apply it twice
        raise ApiError(0, "no controller answered: " + "; ".join(unreachable))


def _error_message(raw: bytes) -> str:
    """The message of the API's ``{"error": {...}}`` body, or the raw text."""
    try:
        error = json.loads(raw)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace")[:500]


def build_dag(api: Api, namespace: str | None, suffix: str, time_scale: float) -> dict[str, Any]:
    """Definitions, the DAG, its jobs and the edges Wait -> Wait5s -> Wait10s."""
    if namespace and namespace != "default":
        try:
            api.call("POST", "/namespaces", {"name": namespace})
        except ApiError as exc:
            if exc.status != 409:  # 409: it exists already, which is all we need
                raise
    dag = api.call("POST", "/dags", {"namespace": namespace, "name": f"dag-tour-{suffix}"})
    print(f"dag: {dag['namespace']}/{dag['name']} (id {dag['id']})")
    previous = None
    for name, seconds in STEPS:
        definition = api.call(
            "POST",
            "/definitions",
            {
                "namespace": namespace,
                "name": f"{name}-{suffix}",
                "kind": "cmd",
                "command": f"sleep {seconds * time_scale:g}",
                "description": f"DAG tour step {name}",
            },
        )
        job = api.call(
            "POST", f"/dags/{dag['id']}/jobs", {"definition_id": definition["id"], "name": name}
        )
        print(f"  job {name}: {definition['command']!r} (definition {definition['name']})")
        if previous:
            api.call("POST", f"/dags/{dag['id']}/dependencies", {"parent": previous, "child": name})
            print(f"  edge {previous} -> {job['name']}")
        previous = name
    return dag


def _clock(iso: str | None) -> str:
    return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S.%f")[:-3] if iso else "-"


def _depths(run: dict[str, Any]) -> dict[int, int]:
    """Each node's distance from the roots, so a parent's change prints before its child's."""
    parents = {n["job_id"]: n["parents"] for n in run["nodes"]}
    depth: dict[int, int] = {}

    def of(job_id: int) -> int:
        if job_id not in depth:
            depth[job_id] = 1 + max((of(p) for p in parents[job_id]), default=-1)
        return depth[job_id]

    return {job_id: of(job_id) for job_id in parents}


def watch(api: Api, run_id: int, timeout: float) -> dict[str, Any]:
    """Poll the DAG run until it ends, printing node state changes; TimeoutError at the end
    of ``timeout``. A controller that stops answering is not fatal: the next URL is tried,
    and a moment without any is waited out."""
    began = time.monotonic()
    seen: dict[int, tuple[str, int]] = {}
    while True:
        try:
            run = api.call("GET", f"/dag-runs/{run_id}")
        except ApiError as exc:
            if exc.status not in (0, 503):
                raise
            print(f"  (cluster unavailable, retrying: {exc})")
            run = None
        if run is not None:
            depth = _depths(run)
            for node in sorted(run["nodes"], key=lambda n: depth[n["job_id"]]):
                state = (node["state"], node["attempt"] or 0)
                if seen.get(node["job_id"]) != state:
                    seen[node["job_id"]] = state
                    where = f"  on {node['worker_id']}" if node["worker_id"] else ""
                    print(
                        f"{datetime.now().strftime('%H:%M:%S.%f')[:-3]}  "
                        f"+{time.monotonic() - began:6.2f}s  {node['name']:<8} {node['state']:<10}"
                        f"  attempt {node['attempt'] or '-'}{where}",
                        flush=True,
                    )
            if run["state"] in FINAL:
                return run
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"DAG run {run_id} did not finish within {timeout:g}s")
        time.sleep(POLL_SECONDS)


def summary(run: dict[str, Any]) -> str:
    """The times the controllers recorded, per node, in dependency order."""
    depth = _depths(run)
    lines = [f"{'NODE':<8}  {'STATE':<10}  ATTEMPT  {'STARTED':<12}  {'FINISHED':<12}  OUTPUT"]
    for node in sorted(run["nodes"], key=lambda n: depth[n["job_id"]]):
        output = (node["output"] or node["error"] or "").strip().replace("\n", " ")[:40]
        lines.append(
            f"{node['name']:<8}  {node['state']:<10}  {node['attempt'] or '-'!s:>7}  "
            f"{_clock(node['started_at']):<12}  {_clock(node['finished_at']):<12}  {output}"
        )
    return "\n".join(line.rstrip() for line in lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("CHRONORAFT_URL") or "http://127.0.0.1:8080",
        help="controller base URL(s), comma separated; the next is tried when one does not "
        "answer (default: $CHRONORAFT_URL or http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("CHRONORAFT_TOKEN", ""),
        help="admin API token, sent as 'Authorization: Bearer ...' (default: $CHRONORAFT_TOKEN)",
    )
    parser.add_argument(
        "--namespace",
        help="namespace for the definitions and the DAG, created when missing "
        "(default: the server's, 'default')",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply every sleep by this (default 1.0; 0.2 makes the tour take ~4 s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="give up, cancel the run and exit 1 after this many seconds of watching (default 120)",
    )
    args = parser.parse_args(argv)
    if args.time_scale <= 0:
        parser.error("--time-scale must be positive")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    urls = [u.strip().rstrip("/") for u in args.url.split(",") if u.strip()]
    api = Api(urls, args.token)
    try:
        dag = build_dag(api, args.namespace, uuid.uuid4().hex[:6], args.time_scale)
        run = api.call("POST", f"/dags/{dag['id']}/runs", {})
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"dag run: {run['id']}", flush=True)
    try:
        run = watch(api, run["id"], args.timeout)
    except (TimeoutError, KeyboardInterrupt) as exc:
        why = str(exc) or "interrupted"
        print(f"stopping: {why}; cancelling DAG run {run['id']}", file=sys.stderr)
        try:
            api.call("POST", f"/dag-runs/{run['id']}/cancel")
        except ApiError as cancel_error:
            print(f"error: could not cancel: {cancel_error}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print()
    print(summary(run))
    reason = f" ({run['error']})" if run["error"] else ""
    print(f"\nresult: DAG run {run['id']} {run['state']}{reason}")
    return 0 if run["state"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
