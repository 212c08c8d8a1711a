"""APScheduler 3 on the same PostgreSQL, measured the same way as chronoraft.

Runs :mod:`bench.apscheduler_peer` in a subprocess with its own database on the bench's
PgServer, samples that process's CPU and RSS and PostgreSQL's CPU over the same kind of
window, and reduces its records with the same :func:`bench.fires.analyze`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.fires import Fire, FireStats, analyze
from bench.harness import BenchEnv, progress
from bench.procstat import Sampler, Usage

MODULE = "bench.apscheduler_peer"


@dataclass
class PeerResult:
    stats: FireStats
    usage: dict[str, Usage]
    missed_events: int
    max_instance_skips: int
    errors: int


def available() -> str | None:
    """None when APScheduler and SQLAlchemy import; else why not (the bench extra)."""
    try:
        import apscheduler  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[bench]')"
    return None


def _records(doc: dict) -> list[Fire]:
    fires = [Fire(job=j, slot=s, started=t) for j, s, t in doc["executed"]]
    fires += [Fire(job=j, slot=s, started=None, state="missed") for j, s in doc["missed"]]
    fires += [
        Fire(job=j, slot=s, started=None, state="max_instances") for j, s in doc["max_instances"]
    ]
    return fires


def _read_window(proc: subprocess.Popen[str], timeout: float) -> tuple[float, float]:
    """The peer's first stdout line, ``{"t0": ..., "t1": ...}``, within ``timeout``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError(f"APScheduler peer did not start its window within {timeout:g}s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"APScheduler peer exited early (code {proc.wait()})")
    doc = json.loads(line)
    return float(doc["t0"]), float(doc["t1"])


def measure(env: BenchEnv, jobs: int, warmup: float, duration: float, threads: int) -> PeerResult:
    """One APScheduler run of ``jobs`` per-second jobs; its database is dropped after."""
    url = env.create_database(f"bench_aps_{jobs}", migrate=False)
    out = env.base_dir / f"aps-{jobs}-{int(time.time())}.json"
    log = env.base_dir / f"aps-{jobs}.log"
    argv = [
        sys.executable,
        "-m",
        MODULE,
        "--url",
        url.replace("postgresql://", "postgresql+psycopg://", 1),
        "--jobs",
        str(jobs),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
        "--threads",
        str(threads),
        "--out",
        str(out),
    ]
    progress(f"APScheduler: {jobs} jobs, {threads} threads, window {duration:g}s")
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
    try:
        # Adding jobs is one INSERT each; allow for it before the window opens.
        t0, t1 = _read_window(proc, timeout=60 + jobs / 50)
        sampler = Sampler()
        sampler.process("scheduler", proc.pid)
        sampler.process("children", proc.pid, include_children=True)
        pg_pid = env.postmaster_pid()
        if pg_pid:
            sampler.postgres("postgres", pg_pid)
        while time.time() < t0:
            time.sleep(min(0.2, t0 - time.time()))
        sampler.start()
        while time.time() < t1:
            time.sleep(min(0.2, max(0.0, t1 - time.time())))
        usage = sampler.stop()
        code = proc.wait(timeout=60)
        if code != 0:
            raise RuntimeError(f"APScheduler peer exited with {code}; see {log}")
        doc = json.loads(out.read_text())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        env.drop_database(url)
    # The children's CPU is the `true` processes only: the process's own time is separate.
    children = usage["children"].cpu_percent - usage["scheduler"].cpu_percent
    usage["children"] = Usage(children, None, None)
    return PeerResult(
        stats=analyze(_records(doc), jobs, t0, t1),
        usage=usage,
        missed_events=sum(1 for _, s in doc["missed"] if t0 <= s < t1),
        max_instance_skips=sum(1 for _, s in doc["max_instances"] if t0 <= s < t1),
        errors=int(doc["errors"]),
    )
