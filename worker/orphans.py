"""Attempts left behind by a previous life of this worker process.

Attempts run in their own sessions (so a cancel can kill the whole group), which also means
they survive the worker being SIGKILLed or crashing. Left alone, such an orphan keeps running
while the controller, after the lease expires, runs the same job again elsewhere: two copies
at once. So every running attempt leaves a small mark on disk (its process group id and the
leader's start time), and a starting worker ends the groups its predecessor left and reports
those attempts as failed, which lets the controller retry them at once instead of waiting
for the lease.

Marks are written without fsync on purpose: they only matter if the worker *process* dies,
and then the page cache survives; after a machine crash there is nothing left to kill.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from common.logging import ctx
from proto import chronoraft_pb2 as pb
from worker.executor import kill_process_group, process_group_alive
from worker.spool import Spool

log = logging.getLogger(__name__)

ERROR_KILLED = "worker restarted while the attempt was running; its processes were killed"
ERROR_GONE = "worker died while the attempt was running"


@dataclass(frozen=True)
class Mark:
    run_id: int
    attempt: int
    pgid: int
    start_ticks: int | None
    started_at: float


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot; with the pid it names one process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of stat(5); fields here start at field 3
    except (IndexError, ValueError):
        return None


class RunningMarks:
    """``<spool dir>/running/<run_id>-<attempt>.json``, one per attempt with a live process."""

    def __init__(self, spool: Spool) -> None:
        self.directory = spool.directory / "running"
        self.directory.mkdir(exist_ok=True)

    def _path(self, run_id: int, attempt: int) -> Path:
        return self.directory / f"{run_id}-{attempt}.json"

    def add(self, run_id: int, attempt: int, pgid: int, started_at: float) -> None:
        doc = {
            "run_id": run_id,
            "attempt": attempt,
            "pgid": pgid,
            "start_ticks": process_start_ticks(pgid),
            "started_at": started_at,
        }
        target = self._path(run_id, attempt)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, target)

    def discard(self, run_id: int, attempt: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(run_id, attempt).unlink()

    def all(self) -> list[Mark]:
        marks = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                doc = json.loads(path.read_text())
                marks.append(
                    Mark(
                        run_id=int(doc["run_id"]),
                        attempt=int(doc["attempt"]),
                        pgid=int(doc["pgid"]),
                        start_ticks=doc.get("start_ticks"),
                        started_at=float(doc.get("started_at", 0.0)),
                    )
                )
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("unreadable running mark removed: %s", path)
                path.unlink(missing_ok=True)
        return marks


def _still_ours(mark: Mark) -> bool:
    """Is the group of ``mark`` alive and still the one our predecessor started?

    A pid is not reused while a process group of that id has members, so a live group whose
    leader is gone is ours; a live leader must have the recorded start time, or the pid now
    belongs to an unrelated process.
    """
    if not process_group_alive(mark.pgid):
        return False
    ticks = process_start_ticks(mark.pgid)
    return ticks is None or mark.start_ticks is None or ticks == mark.start_ticks


async def end_orphans(marks: RunningMarks, spool: Spool, worker_id: str, grace: float = 2.0) -> int:
    """Kill the groups left by a previous worker process and spool a failed result for each
    such attempt that has none yet; returns how many attempts were found."""
    found = marks.all()
    for mark in found:
        log_ctx = ctx(run_id=mark.run_id, attempt=mark.attempt, pgid=mark.pgid)
        killed = False
        if _still_ours(mark):
            log.warning("killing an attempt left running by a previous worker", extra=log_ctx)
            await kill_process_group(mark.pgid, grace)
            killed = True
        if not spool.contains(mark.run_id, mark.attempt):
            spool.put(
                pb.ReportResultRequest(
                    worker_id=worker_id,
                    run_id=mark.run_id,
                    attempt=mark.attempt,
                    state="failed",
                    error=ERROR_KILLED if killed else ERROR_GONE,
                    started_at=mark.started_at,
                    finished_at=time.time(),
                )
            )
        marks.discard(mark.run_id, mark.attempt)
    return len(found)
