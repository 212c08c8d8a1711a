"""Command-line options of ``python -m bench``, with full and ``--quick`` sizes.

Every size option defaults to None on the parser and is filled from :data:`SIZES` after
parsing, so ``--quick --sizes 500`` means "quick, but N = 500": flags given win over both
presets. The full sizes are the ones issue 8 asks for.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

BENCHMARKS = ("limits", "failover", "fire_rate", "scale", "end_to_end")
"""Run order: the physical limits first, so later tables can be read as fractions of them."""

DEFAULT_RECORD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.replace(",", " ").split()]


# option: (full, quick)
SIZES: dict[str, tuple[Any, Any]] = {
    # failover
    "kills": (30, 2),
    "stops": (10, 1),
    "settle": (2.0, 1.5),
    # fire rate (+ APScheduler)
    "sizes": ([100, 300, 600, 1000, 5000], [100]),
    "duration": (30.0, 3.0),
    "warmup": (5.0, 2.0),
    "drain": (15.0, 4.0),
    # scale
    "scale_jobs": ([10_000, 100_000], [10_000]),
    "scale_due": (1000, 100),
    "scale_duration": (20.0, 3.0),
    # end to end
    "e2e_workers": ([1, 2, 3, 4], [1, 2]),
    "e2e_jobs": ([2000, 3000], [200]),
    "e2e_duration": (15.0, 2.0),
    "api_duration": (10.0, 1.0),
    "api_rate": (1000, 200),
    # physical limits
    "pgbench_seconds": (10, 2),
    "spawn_seconds": (5.0, 1.0),
    "spawn_inflight": ([1, 8], [8]),
    "spawn_procs": ([1, 2, 4], [1, 2]),
    # per benchmark
    "budget_minutes": (45.0, 4.0),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="chronoraft benchmarks: tables to stdout, a dated section appended to "
        "docs/benchmarks.md (unless --no-record).",
    )
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run (< 2 min)")
    p.add_argument(
        "--only", nargs="+", choices=BENCHMARKS, metavar="NAME", help=f"any of {BENCHMARKS}"
    )
    p.add_argument("--no-record", action="store_true", help="do not append to the record")
    p.add_argument("--record", type=Path, default=DEFAULT_RECORD, help="Markdown file to append")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep logs, PostgreSQL data and every benchmark's database (to query runs afterwards)",
    )
    p.add_argument(
        "--log-level", default="WARNING", help="nodes' CHRONORAFT_LOG_LEVEL (default WARNING)"
    )
    p.add_argument("--budget-minutes", type=float, help="time limit per benchmark")

    g = p.add_argument_group("failover")
    g.add_argument("--kills", type=int, help="leader SIGKILLs (30; quick 2)")
    g.add_argument("--stops", type=int, help="leader SIGSTOPs (10; quick 1)")
    g.add_argument("--settle", type=float, help="seconds between faults")
    g.add_argument("--raft-min", type=float, help="CHRONORAFT_RAFT_MIN_TIMEOUT override")
    g.add_argument("--raft-max", type=float, help="CHRONORAFT_RAFT_MAX_TIMEOUT override")

    g = p.add_argument_group("fire_rate")
    g.add_argument("--sizes", type=_ints, help="N values, e.g. 100,1000,5000")
    g.add_argument("--duration", type=float, help="measured window, s (30; quick 3)")
    g.add_argument("--warmup", type=float, help="s before the window (5; quick 2)")
    g.add_argument("--drain", type=float, help="max s to wait for the window's runs to start")
    g.add_argument("--fire-workers", type=int, default=2, help="workers (2)")
    g.add_argument(
        "--worker-concurrency",
        type=int,
        default=256,
        help="CHRONORAFT_WORKER_CONCURRENCY (256: a slot is held ~0.1 s per `true` run, "
        "dispatch to result, so 64 capped a worker near 650 runs/s)",
    )
    g.add_argument("--no-apscheduler", action="store_true", help="skip the APScheduler side")
    g.add_argument("--aps-threads", type=int, default=32, help="APScheduler thread pool (32)")
    g.add_argument(
        "--fire-catchup",
        type=float,
        default=1.0,
        help="catchup_window of the chronoraft jobs, s (1: like APScheduler's misfire_grace_time)",
    )

    g = p.add_argument_group("scale")
    g.add_argument("--scale-jobs", type=_ints, help="loaded job counts (10000,100000)")
    g.add_argument("--scale-due", type=int, help="per-second jobs among them (1000)")
    g.add_argument("--scale-duration", type=float, help="steady-state window per count, s")

    g = p.add_argument_group("end_to_end")
    g.add_argument("--e2e-workers", type=_ints, help="worker counts (1,2,3,4)")
    g.add_argument(
        "--e2e-jobs", type=_ints, help="per-second jobs offered, each more than fits (2000,3000)"
    )
    g.add_argument("--e2e-duration", type=float, help="window per worker count, s")
    g.add_argument("--api-concurrency", type=int, default=16, help="client concurrency (16)")
    g.add_argument("--api-duration", type=float, help="s per API measurement")
    g.add_argument("--api-rate", type=int, help="fixed-rate GET job test, req/s (1000)")

    g = p.add_argument_group("limits")
    g.add_argument("--pgbench-clients", type=int, default=8, help="pgbench -c (8)")
    g.add_argument("--pgbench-seconds", type=int, help="pgbench -T (10)")
    g.add_argument("--spawn-seconds", type=float, help="s per spawn-rate measurement")
    g.add_argument("--spawn-procs", type=_ints, help="spawning processes (1,2,4)")
    g.add_argument(
        "--spawn-inflight", type=_ints, help="processes in flight per spawner (1,8; quick 8)"
    )
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    opts = parser().parse_args(argv)
    preset = 1 if opts.quick else 0
    for name, values in SIZES.items():
        if getattr(opts, name, None) is None:
            setattr(opts, name, values[preset])
    opts.only = list(opts.only or BENCHMARKS)
    return opts
