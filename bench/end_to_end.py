"""End to end: noop runs per second through gRPC workers, and REST API throughput.

Runs: more per-second ``true`` jobs than the fleet can run are offered, so the count of
runs that SUCCEEDED inside the window (``runs.finished_at``) is the fleet's throughput;
workers are added one at a time (1 -> 4), each step with a fresh set of jobs, the previous
step's backlog skipped and its dead rows vacuumed. Each step is run at every offered load:
the slots the fleet cannot start yet wait in the queue (the jobs' catch-up window, 60 s, is
longer than the window), and creating and queueing them takes the leader's and PostgreSQL's
CPU from the runs, so the more is offered beyond what fits, the fewer run.
Each figure is set against the bare spawn rate of the same number of processes measured by
:mod:`bench.limits` in the same run.

API: GET a job, list runs with filters, POST a job, each at a fixed client concurrency
against one controller (the leader) and spread over all three; plus GET job at a fixed
request rate.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from argparse import Namespace
from collections.abc import Callable

from bench import api_load, pgsql
from bench.harness import BenchEnv, api, leader_pid, progress
from bench.procstat import Sampler
from bench.stats import ratio
from bench.table import Table
from controller.local_cluster import LocalCluster

NAME = "end_to_end"


def _scale_to(cluster: LocalCluster, workers: int) -> None:
    while len(cluster.worker_names) < workers:
        name = cluster.add_worker()
        cluster.start(name)
    cluster.wait_ready(90)


def runs_step(
    env: BenchEnv,
    cluster: LocalCluster,
    url: str,
    workers: int,
    offered: int,
    opts: Namespace,
    table: Table,
) -> None:
    _scale_to(cluster, workers)
    leader = cluster.wait_for("a leader", cluster.leader, 30)
    prefix = f"e2e{workers}x{offered}-"
    pgsql.copy_jobs(url, pgsql.every_second(prefix, offered))
    api(cluster, leader, "POST", "/api/v1/scheduler/reload")
    time.sleep(opts.warmup)
    sampler = Sampler()
    sampler.process("leader", leader_pid(cluster, leader))
    for name in cluster.worker_names:
        pid = cluster.nodes[name].pid
        if pid:
            sampler.process(name, pid, include_children=True)
    pg_pid = env.postmaster_pid()
    if pg_pid:
        sampler.postgres("postgres", pg_pid)
    t0 = time.time()
    sampler.start()
    time.sleep(opts.e2e_duration)
    usage = sampler.stop()
    t1 = time.time()
    pgsql.pause_jobs(url, prefix)
    # Results reach PostgreSQL after the run ends (ReportResult from the worker's spool):
    # skip what never started and wait for the rest to be reported before counting.
    left = pgsql.end_phase(url, prefix, opts.drain)
    if left:
        table.note(
            f"{workers} workers, {offered} offered: {left} runs still unreported "
            f"{opts.drain:g}s after"
        )
    finished = pgsql.finished_between(url, prefix, t0, t1)
    vacuumed = pgsql.vacuum_run_tables(url)
    progress(f"end_to_end: VACUUM (ANALYZE) after the step: {vacuumed:.1f}s")
    seconds = t1 - t0
    succeeded = finished.get("succeeded", 0) / seconds
    failed = sum(n for state, n in finished.items() if state not in ("succeeded", "skipped"))
    bare = env.results.get("spawn_rate", {}).get(workers)
    leader_cpu = usage["leader"].cpu_percent
    workers_cpu = sum(u.cpu_percent for n, u in usage.items() if n in cluster.worker_names)
    pg_cpu = usage["postgres"].cpu_percent if "postgres" in usage else None
    table.add(
        workers,
        float(offered),
        succeeded,
        failed / seconds,
        bare,
        ratio(succeeded, bare),
        leader_cpu,
        workers_cpu,
        pg_cpu,
        cpu_ms_per_run(succeeded, leader_cpu, workers_cpu, pg_cpu),
    )
    progress(f"end_to_end: {workers} workers, {offered} offered: {succeeded:.0f} runs/s")


def cpu_ms_per_run(
    runs_per_second: float, leader: float, workers: float, postgres: float | None
) -> float | None:
    """CPU milliseconds the three busy parts spent per succeeded run (CPU % of one core)."""
    if postgres is None or runs_per_second <= 0:
        return None
    return (leader + workers + postgres) * 10 / runs_per_second


def _budget_note(bare_cpu_ms: dict[int, float]) -> str:
    """Why the fraction of bare is what it is: runs share the machine's CPU with spawning, so
    half the bare rate needs a run to cost at most twice a bare spawn."""
    if not bare_cpu_ms:
        return "the limits table (not run) gives a bare spawn's CPU"
    costs = ", ".join(f"{ms:.3f} ms with {n}" for n, ms in sorted(bare_cpu_ms.items()))
    return (
        f"a bare spawn took {costs} spawning process(es), so on a CPU-bound machine half the "
        "bare rate needs at most twice that per run"
    )


def _request_makers(
    cluster: LocalCluster, targets: list[str], job_ids: list[int]
) -> dict[str, Callable[[int], api_load.Request]]:
    bases = [cluster.url(t) for t in targets]
    rng = random.Random(7)

    def base(i: int) -> str:
        return bases[i % len(bases)]

    return {
        "GET /api/v1/jobs/{id}": lambda i: (
            "GET",
            f"{base(i)}/api/v1/jobs/{rng.choice(job_ids)}",
            None,
        ),
        "GET /api/v1/runs?job_id&state&limit=20": lambda i: (
            "GET",
            f"{base(i)}/api/v1/runs?job_id={rng.choice(job_ids)}&state=succeeded&limit=20",
            None,
        ),
        "POST /api/v1/jobs": lambda i: (
            "POST",
            f"{base(i)}/api/v1/jobs",
            {
                "name": f"api-{uuid.uuid4().hex[:12]}",
                "schedule": "0 0 3 * * *",
                "command": "true",
                "args": [],
            },
        ),
    }


def api_tables(cluster: LocalCluster, url: str, opts: Namespace) -> Table:
    leader = cluster.wait_for("a leader", cluster.leader, 30)
    job_ids = pgsql.job_ids(url, "e2e")
    table = Table(
        "End to end: REST API throughput (aiohttp client on the same machine)",
        ["request", "controllers", "mode", "req/s", "p50 ms", "p99 ms", "max ms", "errors"],
    )
    token = cluster.admin_token
    c = opts.api_concurrency
    for label, targets in (("1 (leader)", [leader]), ("3", cluster.controller_names)):
        makers = _request_makers(cluster, targets, job_ids)
        for request, make in makers.items():
            progress(f"end_to_end: {request} on {label}, {c} clients")
            result = asyncio.run(api_load.closed_loop(make, token, c, opts.api_duration))
            s = result.latency
            table.add(
                request, label, f"{c} clients", result.rate, s.median, s.p99, s.max, result.errors
            )
            if result.first_error:
                table.note(f"{request} on {label}: first error {result.first_error}")
        make = makers["GET /api/v1/jobs/{id}"]
        progress(f"end_to_end: GET job at {opts.api_rate}/s on {label}")
        result = asyncio.run(api_load.fixed_rate(make, token, c, opts.api_rate, opts.api_duration))
        s = result.latency
        table.add(
            "GET /api/v1/jobs/{id}",
            label,
            f"{opts.api_rate}/s offered",
            result.rate,
            s.median,
            s.p99,
            s.max,
            result.errors,
        )
    table.note(
        f"{opts.api_duration:g}s per row; no jobs firing meanwhile; fixed-rate latency counts "
        "from each request's due time (a server that falls behind shows it in p99)"
    )
    table.note("the client shares the 2 cores with the 3 controllers and PostgreSQL")
    return table


def run(env: BenchEnv, opts: Namespace) -> list[Table]:
    counts = sorted(opts.e2e_workers)
    runs = Table(
        "End to end: noop (`true`) runs/s through gRPC workers, more per-second jobs offered "
        "than they run",
        [
            "workers",
            "offered/s",
            "succeeded/s",
            "failed/s",
            "bare spawn/s",
            "fraction of bare",
            "leader CPU %",
            "workers CPU %",
            "PG CPU %",
            "CPU ms/run",
        ],
    )
    with env.cluster(NAME, workers=counts[0], worker_concurrency=opts.worker_concurrency) as (
        cluster,
        url,
    ):
        for workers in counts:
            for offered in sorted(opts.e2e_jobs):
                runs_step(env, cluster, url, workers, offered, opts, runs)
        tables = [runs, api_tables(cluster, url, opts)]
    runs.note(
        f"succeeded/s = runs that finished in the {opts.e2e_duration:g}s window; bare spawn/s = "
        "the same number of Python processes spawning `true` (best of the limits table's "
        "in-flight settings); '-' where limits did not measure that count"
    )
    runs.note(
        f"each worker {opts.worker_concurrency} slots; workers CPU includes their `true` children"
    )
    runs.note(
        "CPU ms/run = leader + workers (with children) + PostgreSQL CPU per succeeded run; "
        + _budget_note(env.results.get("spawn_cpu_ms", {}))
    )
    runs.note(
        "after each step its backlog is skipped and runs, run_attempts and jobs are VACUUM "
        "(ANALYZE)d, so autovacuum's round over the dead rows does not fall inside one step's "
        "window and not another's; sustained, that work is PostgreSQL's to do as well"
    )
    return tables
