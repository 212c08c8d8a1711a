"""Physical limits of this machine, measured in the same run as everything else.

pgbench (``-N``, simple writes, synchronous commit as the PgServer runs it) says how many
small write transactions the bench's own PostgreSQL takes per second; the spawn probe says
how many ``true`` processes Python can start per second with 1, 2, ... processes doing it.
The scheduler figures are meant to be read as fractions of these two.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import time
from argparse import Namespace

from bench import spawn_probe
from bench.harness import BenchEnv, progress
from bench.procstat import Sampler
from bench.table import Table

# The private server's binaries are found the way PgServer finds initdb/pg_ctl.
from common.pgserver import _find_bin as find_pg_bin

NAME = "limits"
TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)


def parse_pgbench(output: str) -> tuple[float | None, float | None]:
    """(tps without connection time, average latency ms) from pgbench's report."""
    tps = TPS.search(output)
    latency = LATENCY.search(output)
    return (
        float(tps.group(1)) if tps else None,
        float(latency.group(1)) if latency else None,
    )


def _pgbench_args(env: BenchEnv, dbname: str) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(env.pg.port), "-U", env.pg.user, dbname]


def pgbench(env: BenchEnv, opts: Namespace) -> Table:
    url = env.create_database("bench_pgbench", migrate=False)
    dbname = url.rsplit("/", 1)[1]
    binary = find_pg_bin("pgbench")
    table = Table(
        f"Physical limit: pgbench -N -c {opts.pgbench_clients} -T {opts.pgbench_seconds} "
        "on the bench's PostgreSQL",
        ["test", "clients", "tps", "latency avg ms", "PG CPU %"],
    )
    try:
        subprocess.run(
            [binary, "-i", "-s", "1", "-q", *_pgbench_args(env, dbname)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        sampler = Sampler()
        pg_pid = env.postmaster_pid()
        if pg_pid:
            sampler.postgres("postgres", pg_pid)
        sampler.start()
        progress(f"pgbench -N -c {opts.pgbench_clients} -T {opts.pgbench_seconds}")
        done = subprocess.run(
            [
                binary,
                "-N",
                "-c",
                str(opts.pgbench_clients),
                "-j",
                str(min(opts.pgbench_clients, os.cpu_count() or 1)),
                "-T",
                str(opts.pgbench_seconds),
                *_pgbench_args(env, dbname),
            ],
            capture_output=True,
            text=True,
            timeout=opts.pgbench_seconds + 120,
        )
        usage = sampler.stop()
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed: {done.stderr.strip()[-500:]}")
        tps, latency = parse_pgbench(done.stdout)
        env.results["pgbench_tps"] = tps
        pg = usage.get("postgres")
        table.add(
            "-N (simple update)", opts.pgbench_clients, tps, latency, pg.cpu_percent if pg else None
        )
    finally:
        env.drop_database(url)
    table.note("pgbench runs as a client over TCP; fsync on, synchronous_commit on (defaults)")
    return table


def spawn_rate(
    procs: int, inflight: int, seconds: float, method: str = "asyncio"
) -> tuple[float, float]:
    """(``true`` processes per second, CPU ms per process) of ``procs`` probes side by side.

    The CPU is everything the probes and their children used (each probe's reaped ``true``
    processes are in its children's times, and the probe's in ours once reaped), the
    interpreters' start included (~1 % of a 5 s probe), so end to end's CPU per run can be
    set against what a bare spawn costs."""
    argv = spawn_probe.command(seconds, inflight, start_at=time.time() + 0.5, method=method)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = [
        subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, cwd=spawn_probe.ROOT, start_new_session=True
        )
        for _ in range(procs)
    ]
    try:
        total = 0.0
        spawned = 0
        for child in children:
            out, _ = child.communicate(timeout=seconds + 60)
            doc = json.loads(out)
            total += doc["spawned"] / doc["elapsed"]
            spawned += doc["spawned"]
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return total, cpu * 1000 / max(1, spawned)


def spawning(env: BenchEnv, opts: Namespace) -> Table:
    table = Table(
        "Physical limit: bare spawn rate of `true` from Python",
        [
            "processes",
            "method",
            "in flight each",
            "spawns/s total",
            "spawns/s per process",
            "CPU ms/spawn",
        ],
    )
    rates: dict[int, float] = {}
    cpu_ms: dict[int, float] = {}
    for procs in opts.spawn_procs:
        for method in spawn_probe.METHODS:
            for inflight in sorted(opts.spawn_inflight):
                progress(f"spawn probe: {procs} processes x {inflight} in flight, {method}")
                rate, ms = spawn_rate(procs, inflight, opts.spawn_seconds, method)
                table.add(procs, method, inflight, rate, rate / procs, ms)
                if rate > rates.get(procs, 0.0):
                    rates[procs], cpu_ms[procs] = rate, ms
    env.results["spawn_rate"] = rates
    env.results["spawn_cpu_ms"] = cpu_ms
    table.note(
        f"{os.cpu_count()} cores; each probe spawns and waits in `in flight` loops for "
        f"{opts.spawn_seconds:g}s; asyncio = asyncio.create_subprocess_exec (Python 3.11's "
        "default child watcher), pidfd = subprocess.Popen and the exit seen on a pidfd, as the "
        "worker's executor does per run; end to end is set against the faster"
    )
    table.note(
        "CPU ms/spawn = the probes' CPU and their children's (the `true` processes), per spawn"
    )
    return table


def run(env: BenchEnv, opts: Namespace) -> list[Table]:
    return [pgbench(env, opts), spawning(env, opts)]
