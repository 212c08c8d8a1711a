"""The side-by-side peer: APScheduler 3, run as its own process so it can be measured.

``python -m bench.apscheduler_peer --url postgresql+psycopg://... --jobs N ...`` runs a
BackgroundScheduler with a SQLAlchemyJobStore on the given database and N interval jobs
(every 1 s, first slot on a whole second), each spawning ``true``. It prints one JSON line
``{"t0": ..., "t1": ...}`` (the measured window) as soon as it is known, and after the
window writes every fire, miss and max_instances skip to ``--out`` as JSON.

Lateness is measured like chronoraft's: the job function takes ``time.time()`` right after
``Popen`` returned (the process exists), and APScheduler's EVENT_JOB_EXECUTED hands back
that value (``retval``) together with the slot it fired for (``scheduled_run_time``).
APScheduler's defaults are kept (misfire_grace_time 1 s, coalesce off, max_instances 1)
except the thread pool size, which is a flag.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any


def spawn_true() -> float:
    """The job: start ``true``, note when it exists, wait for it (as a worker does)."""
    proc = subprocess.Popen(
        ["true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    started = time.time()
    proc.wait()
    return started


class Recorder:
    """Collects scheduler events from the executor threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executed: list[tuple[str, float, float]] = []
        """(job id, slot, process start) per fire."""
        self.missed: list[tuple[str, float]] = []
        self.max_instances: list[tuple[str, float]] = []
        self.errors = 0

    def on_event(self, event: Any) -> None:
        from apscheduler import events

        with self.lock:
            if event.code == events.EVENT_JOB_EXECUTED:
                self.executed.append(
                    (event.job_id, event.scheduled_run_time.timestamp(), float(event.retval))
                )
            elif event.code == events.EVENT_JOB_MISSED:
                self.missed.append((event.job_id, event.scheduled_run_time.timestamp()))
            elif event.code == events.EVENT_JOB_MAX_INSTANCES:
                self.max_instances.extend(
                    (event.job_id, t.timestamp()) for t in event.scheduled_run_times
                )
            elif event.code == events.EVENT_JOB_ERROR:
                self.errors += 1

    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {
                "executed": self.executed,
                "missed": self.missed,
                "max_instances": self.max_instances,
                "errors": self.errors,
            }


def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.5))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of the job store")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--grace", type=float, default=3.0, help="seconds after the window")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    from apscheduler import events
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    recorder = Recorder()
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=args.url, tablename="apscheduler_jobs")},
        executors={"default": ThreadPoolExecutor(max_workers=args.threads)},
        timezone=UTC,
    )
    scheduler.add_listener(
        recorder.on_event,
        events.EVENT_JOB_EXECUTED
        | events.EVENT_JOB_MISSED
        | events.EVENT_JOB_MAX_INSTANCES
        | events.EVENT_JOB_ERROR,
    )
    scheduler.start(paused=True)
    first = datetime.fromtimestamp(math.ceil(time.time()) + 1, UTC)
    for i in range(args.jobs):  # one INSERT each: the job store has no bulk add
        scheduler.add_job(
            spawn_true,
            "interval",
            seconds=1,
            start_date=first,
            id=f"bench-{i}",
            replace_existing=True,
        )
    scheduler.resume()
    t0 = float(math.ceil(time.time() + args.warmup))
    t1 = t0 + args.duration
    print(json.dumps({"t0": t0, "t1": t1}), flush=True)
    _sleep_until(t1)
    scheduler.pause()  # no new slots; fires already submitted may still finish
    time.sleep(args.grace)
    result = recorder.dump()
    result.update(t0=t0, t1=t1, jobs=args.jobs)
    with open(args.out, "w") as out:
        json.dump(result, out)
    scheduler.shutdown(wait=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
