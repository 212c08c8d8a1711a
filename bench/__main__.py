"""``python -m bench``: run the benchmarks in turn, print their tables, record the run.

One private PostgreSQL serves the whole run (every benchmark gets its own database on it),
so the pgbench figure and every scheduler figure come from the same server. Each benchmark
has a time budget; one that fails or runs out of time is reported and the next one runs.
Ctrl-C or SIGTERM stops everything, processes and PostgreSQL included.
"""

from __future__ import annotations

import importlib
import shlex
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from bench import config
from bench.harness import BenchEnv, BenchTimeout, bench_env, progress, time_budget
from bench.machine import describe, machine_info
from bench.record import append_run
from bench.table import Table, render_text


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_one(env: BenchEnv, name: str, opts: Any) -> list[Table]:
    """The tables of one benchmark, or a one-line table saying why there are none."""
    module = importlib.import_module(f"bench.{name}")
    started = time.monotonic()
    try:
        with time_budget(opts.budget_minutes * 60, name):
            tables: list[Table] = module.run(env, opts)
    except (BenchTimeout, Exception) as exc:  # noqa: BLE001 - report it, go on with the next
        traceback.print_exc(file=sys.stderr)
        failed = Table(f"{name}: failed", ["benchmark", "error"])
        failed.add(name, f"{type(exc).__name__}: {exc}"[:300])
        return [failed]
    progress(f"{name} took {time.monotonic() - started:.0f}s")
    return tables


def main(argv: list[str] | None = None) -> int:
    opts = config.parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    started_at = datetime.now(UTC)
    results: list[Table] = []
    failed = False
    with bench_env(keep=opts.keep, log_level=opts.log_level) as env:
        machine = machine_info(env.pg.url)
        progress(describe(machine))
        for name in opts.only:
            progress(f"--- {name} ---")
            tables = run_one(env, name, opts)
            failed = failed or any(t.title.endswith(": failed") for t in tables)
            for table in tables:
                print(render_text(table), end="\n\n", flush=True)
            results.extend(tables)
    if not opts.no_record:
        append_run(opts.record, started_at, command, machine, results)
        progress(f"appended to {opts.record}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        progress("interrupted; processes and PostgreSQL were stopped")
        sys.exit(130)
