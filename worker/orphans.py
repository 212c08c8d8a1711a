"""Attempts left behind by a previous life of this worker process.

Attempts run in their own sessions (so a cancel can kill the whole group), which also means
they survive the worker being SIGKILLed or crashing. Left alone, such an orphan keeps running
while the controller, after the lease expires, runs the same job again elsewhere: two copies
at once. So every running attempt leaves a small mark on disk (its process group id and the
leader's start time), and a starting worker ends the groups its predecessor left and reports
those attempts as failed, which lets the controller retry them at once instead of waiting
for the lease.

The marks are lines of one append-only journal, ``<spool dir>/running/marks.log``: a started
attempt appends its mark, an ended one appends ``{"ended": [run_id, attempt]}``, and a batch
of them is one write. A file per mark cost a create, a rename and an unlink per attempt, on
the event loop; on ext4 without a journal each create also walks past the inodes freed in
the last minutes, and creating files (marks and results) was the largest kernel cost of a
start (perf, bench.worker_spawn). Once the journal has grown past ``COMPACT_BYTES`` it is
rewritten with only the live marks.

Marks are written without fsync on purpose: they only matter if the worker *process* dies,
and then the page cache survives; after a machine crash there is nothing left to kill.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.logging import ctx
from proto import chronoraft_pb2 as pb
from worker.executor import (
    StartedProcess,
    kill_process_group,
    process_group_alive,
    stat_fields,
)
from worker.spool import Spool

log = logging.getLogger(__name__)

ERROR_KILLED = "worker restarted while the attempt was running; its processes were killed"
ERROR_GONE = "worker died while the attempt was running"
JOURNAL = "marks.log"
COMPACT_BYTES = 1_048_576
"""About 7,000 attempts' worth of lines; the rewrite then holds only the running ones."""

AttemptKey = tuple[int, int]


@dataclass(frozen=True)
class Mark:
    run_id: int
    attempt: int
    pgid: int
    start_ticks: int | None
    """The group leader's start stamp (see process_start_ticks), or its lower bound."""
    started_at: float
    start_ticks_max: int | None = None
    """Its upper bound; None when ``start_ticks`` is exact (and in older journals)."""

    def started_then(self, ticks: int) -> bool:
        """Does a process started at ``ticks`` match the recorded start?"""
        if self.start_ticks is None:
            return True
        high = self.start_ticks if self.start_ticks_max is None else self.start_ticks_max
        return self.start_ticks <= ticks <= high


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot; with the pid it names one process."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    try:
        return int(fields[19])  # field 22 of proc(5); the list starts at field 3
    except (IndexError, ValueError):
        return None


class StartTicks:
    """The start stamp a mark records for an attempt's process, without reading /proc.

    The executor brackets each fork by two readings of the clock the kernel stamps starts
    with (:class:`worker.executor.StartedProcess`). This is checked once, on the first
    process, against /proc: where the stamp falls outside the bracket (a kernel or sandbox
    that stamps otherwise), every mark reads /proc as before, which the process being
    unreaped during ``on_started`` makes exact.
    """

    def __init__(self) -> None:
        self._bracket_holds: bool | None = None

    def of(self, process: StartedProcess) -> tuple[int | None, int | None]:
        """(lowest, highest) start stamp of ``process``, for Mark's two fields."""
        bracket = process.start_ticks
        if bracket is not None and self._bracket_holds:
            return bracket
        exact = process_start_ticks(process.pid)
        if bracket is not None and exact is not None and self._bracket_holds is None:
            self._bracket_holds = bracket[0] <= exact <= bracket[1]
            if not self._bracket_holds:
                log.warning(
                    "process start stamps do not follow CLOCK_BOOTTIME here (%d outside "
                    "%d..%d); reading /proc for every attempt",
                    exact,
                    *bracket,
                )
        return exact, exact


class RunningMarks:
    """``<spool dir>/running/marks.log``: a mark per attempt with a live process group.

    Writes are serialised by a lock: the worker records started attempts and ended ones from
    two group commits, whose flushes run in different threads.
    """

    def __init__(self, spool: Spool) -> None:
        self.directory = spool.directory / "running"
        self.directory.mkdir(exist_ok=True)
        self.path = self.directory / JOURNAL
        self._lock = threading.Lock()
        self._live: dict[AttemptKey, Mark] = {}
        self._fd: int | None = None
        self._size = 0

    def all(self) -> list[Mark]:
        """The marks on disk: at start-up, the attempts a previous process left running.

        Includes the one-file-per-mark files of older versions; only reads.
        """
        marks = self._read_journal()
        for _, mark in self._legacy_files():
            if mark is not None:
                marks[(mark.run_id, mark.attempt)] = mark
        return list(marks.values())

    def update(self, started: Sequence[Mark], ended: Sequence[AttemptKey]) -> None:
        """Record attempts that started, then attempts that ended, with one write."""
        with self._lock:
            self._update(started, ended)

    def close(self) -> None:
        with self._lock:
            self._close_fd()

    def _update(self, started: Sequence[Mark], ended: Sequence[AttemptKey]) -> None:
        if self._fd is None:
            self._open()
        lines = [_line(_doc(mark)) for mark in started]
        lines.extend(_line({"ended": list(key)}) for key in ended)
        for mark in started:
            self._live[(mark.run_id, mark.attempt)] = mark
        for key in ended:
            self._live.pop(key, None)
        data = "".join(lines).encode()
        if self._size + len(data) > COMPACT_BYTES:
            self._rewrite()
            return
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(data)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> None:
        """Before the first write: take over what is on disk, rewritten to its live marks.

        The rewrite drops ended marks and a line torn by a crash (an append after it would
        be garbled too), and folds in the files of older versions, deleted once it is done.
        """
        self._live = {(mark.run_id, mark.attempt): mark for mark in self.all()}
        self._rewrite()
        for path, mark in self._legacy_files():
            if mark is None:
                log.warning("unreadable running mark removed: %s", path)
            path.unlink(missing_ok=True)

    def _read_journal(self) -> dict[AttemptKey, Mark]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        marks: dict[AttemptKey, Mark] = {}
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                if "ended" in doc:
                    run_id, attempt = doc["ended"]
                    marks.pop((int(run_id), int(attempt)), None)
                else:
                    mark = _mark_from(doc)
                    marks[(mark.run_id, mark.attempt)] = mark
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable running mark skipped: %r", line[:200])
        return marks

    def _legacy_files(self) -> list[tuple[Path, Mark | None]]:
        """``<run_id>-<attempt>.json``, a file per mark, as written before the journal
        (None for an unreadable one): a worker upgraded right after a crash must end them."""
        found: list[tuple[Path, Mark | None]] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                found.append((path, _mark_from(json.loads(path.read_text()))))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError):
                found.append((path, None))
        return found

    def _rewrite(self) -> None:
        """Replace the journal with the live marks (atomically: a rename)."""
        data = "".join(_line(_doc(mark)) for mark in self._live.values()).encode()
        tmp = self.path.with_name(JOURNAL + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)
        self._close_fd()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = len(data)


def _line(doc: dict[str, Any]) -> str:
    return json.dumps(doc) + "\n"


def _doc(mark: Mark) -> dict[str, Any]:
    """The journal's form of a mark (``dataclasses.asdict`` deep-copies: slower per start)."""
    return {
        "run_id": mark.run_id,
        "attempt": mark.attempt,
        "pgid": mark.pgid,
        "start_ticks": mark.start_ticks,
        "start_ticks_max": mark.start_ticks_max,
        "started_at": mark.started_at,
    }


def _mark_from(doc: dict[str, Any]) -> Mark:
    return Mark(
        run_id=int(doc["run_id"]),
        attempt=int(doc["attempt"]),
        pgid=int(doc["pgid"]),
        start_ticks=doc.get("start_ticks"),
        started_at=float(doc.get("started_at", 0.0)),
        start_ticks_max=doc.get("start_ticks_max"),
    )


def _still_ours(mark: Mark) -> bool:
    """Is the group of ``mark`` alive and still the one our predecessor started?

    A pid is not reused while a process group of that id has members, so a live group whose
    leader is gone is ours; a live leader must have the recorded start time, or the pid now
    belongs to an unrelated process.
    """
    if not process_group_alive(mark.pgid):
        return False
    ticks = process_start_ticks(mark.pgid)
    return ticks is None or mark.started_then(ticks)


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
        marks.update([], [(mark.run_id, mark.attempt)])
    return len(found)
