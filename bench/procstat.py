"""CPU time and memory of processes, read from /proc (Linux only).

Why /proc and not psutil: it is two small files, the bench adds no dependency, and the
parsing is pure and unit-tested with sample strings. CPU % is reported as a share of ONE
core (100 % = one core busy for the whole window; the maximum on this 2-core box is 200 %).

PostgreSQL's CPU is the postmaster's own time plus every live backend's, plus the
postmaster's ``cutime``/``cstime``: the kernel adds a child's whole CPU time there when the
postmaster reaps it, so backends that come and go inside a window are still counted.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the bench needs (CPU times in clock ticks)."""

    pid: int
    comm: str
    state: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def own_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def children_ticks(self) -> int:
        """CPU of children this process has waited for (e.g. a worker's ``true`` runs)."""
        return self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line.

    ``comm`` is in parentheses and may itself contain spaces and parentheses, so the fixed
    fields are the ones after the LAST ``)``; field 3 (state) is the first of them.
    """
    open_paren = text.index("(")
    close_paren = text.rindex(")")
    pid = int(text[:open_paren].strip())
    comm = text[open_paren + 1 : close_paren]
    rest = text[close_paren + 2 :].split()

    def field_no(n: int) -> str:  # man 5 proc numbers fields from 1
        return rest[n - 3]

    return ProcStat(
        pid=pid,
        comm=comm,
        state=field_no(3),
        ppid=int(field_no(4)),
        utime=int(field_no(14)),
        stime=int(field_no(15)),
        cutime=int(field_no(16)),
        cstime=int(field_no(17)),
    )


def parse_status_rss_kb(text: str) -> int | None:
    """``VmRSS`` in kB from ``/proc/<pid>/status``; None for a zombie or kernel thread."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def read_stat(pid: int) -> ProcStat | None:
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def read_rss_mb(pid: int) -> float | None:
    try:
        kb = parse_status_rss_kb(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return None if kb is None else kb / 1024


def process_cpu_seconds(pid: int, include_children: bool = False) -> float | None:
    """CPU seconds used so far by ``pid`` (and, if asked, its reaped children)."""
    stat = read_stat(pid)
    if stat is None:
        return None
    ticks = stat.own_ticks + (stat.children_ticks if include_children else 0)
    return ticks / CLK_TCK


def postgres_cpu_seconds(postmaster_pid: int) -> float | None:
    """CPU seconds of a whole PostgreSQL server: postmaster, live backends, reaped ones."""
    root = read_stat(postmaster_pid)
    if root is None:
        return None
    ticks = root.own_ticks + root.children_ticks
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name))
        if stat is not None and stat.ppid == postmaster_pid:
            ticks += stat.own_ticks
    return ticks / CLK_TCK


def postmaster_pid(data_dir: Path) -> int | None:
    """The server's pid from the first line of ``postmaster.pid``."""
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Usage:
    """What one watched process used over a window."""

    cpu_percent: float
    rss_mb_max: float | None
    rss_mb_mean: float | None


@dataclass
class _Watched:
    cpu: Callable[[], float | None]
    rss: Callable[[], float | None] | None
    cpu_start: float | None = None
    cpu_last: float | None = None
    rss_samples: list[float] | None = None


class Sampler:
    """Measures CPU % (start/stop difference) and RSS (sampled) of named processes.

    RSS is sampled on a thread every ``interval`` seconds because it goes up and down;
    CPU time only grows, so two readings are exact. A process that dies mid-window keeps
    its last reading.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._watched: dict[str, _Watched] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._elapsed = 0.0

    def process(self, name: str, pid: int, include_children: bool = False) -> None:
        """Watch one process's CPU and RSS."""
        self._watched[name] = _Watched(
            cpu=lambda: process_cpu_seconds(pid, include_children), rss=lambda: read_rss_mb(pid)
        )

    def postgres(self, name: str, pid: int) -> None:
        """Watch a PostgreSQL server's CPU (RSS of many backends sharing memory means little)."""
        self._watched[name] = _Watched(cpu=lambda: postgres_cpu_seconds(pid), rss=None)

    def _sample(self) -> None:
        for watched in self._watched.values():
            cpu = watched.cpu()
            if cpu is not None:
                watched.cpu_last = cpu
            if watched.rss is not None and watched.rss_samples is not None:
                rss = watched.rss()
                if rss is not None:
                    watched.rss_samples.append(rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        for watched in self._watched.values():
            watched.cpu_start = watched.cpu()
            watched.cpu_last = watched.cpu_start
            watched.rss_samples = []
        self._started = time.monotonic()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Usage]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()
        self._elapsed = max(1e-9, time.monotonic() - self._started)
        out: dict[str, Usage] = {}
        for name, w in self._watched.items():
            used = (
                (w.cpu_last - w.cpu_start)
                if w.cpu_last is not None and w.cpu_start is not None
                else float("nan")
            )
            samples = w.rss_samples or []
            out[name] = Usage(
                cpu_percent=100.0 * used / self._elapsed,
                rss_mb_max=max(samples) if samples else None,
                rss_mb_mean=sum(samples) / len(samples) if samples else None,
            )
        return out
