"""The ledger check of ``chronoraft chaos``: rows and ledger lines in, a report out.

Why pure functions: the check decides whether a chaos run passed, so it must be right in
the cases that matter (a slot fired twice, a slot lost, a skip without a reason, a command
executed twice for one attempt) and those cases are hard to provoke on demand with real
processes. Keeping it free of I/O lets unit tests feed it exactly those cases.

Inputs are what the chaos tool reads at the end: every run of its jobs straight from
PostgreSQL, and each job's ledger file, in which the job's command appended
``"$CHRONORAFT_RUN_ID $CHRONORAFT_ATTEMPT"`` once per execution. Every job fires every
second, so its slots are whole seconds and its window is ``[first slot, last slot]``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["Check", "LedgerReport", "RunRow", "check_ledger", "format_table"]

TERMINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled", "skipped"})
NEEDS_REASON = frozenset({"failed", "skipped", "timed_out", "cancelled"})
EXAMPLES = 10
"""Violations listed one by one per check; the rest are only counted."""


@dataclass(frozen=True)
class RunRow:
    """One row of ``runs``, reduced to what the invariants talk about."""

    id: int
    job_id: int
    scheduled_for: datetime
    state: str
    late: bool = False
    attempt: int = 1
    error: str | None = None

    @property
    def slot(self) -> int:
        """The slot as a Unix second (jobs fire every second, so slots are whole)."""
        return int(self.scheduled_for.timestamp() // 1)


@dataclass
class Check:
    """One invariant: how many violations, and the first few spelled out."""

    name: str
    violations: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, message: str, count: int = 1) -> None:
        self.violations += count
        if len(self.examples) < EXAMPLES:
            self.examples.append(message)

    @property
    def ok(self) -> bool:
        return self.violations == 0


@dataclass
class LedgerReport:
    """What the chaos run did to the runs, and which invariants held."""

    jobs: int = 0
    runs: int = 0
    slots_checked: int = 0
    succeeded: int = 0
    late: int = 0
    retried: int = 0
    skipped: int = 0
    failed: int = 0
    cancelled_or_timed_out: int = 0
    executions: int = 0
    checks: dict[str, Check] = field(default_factory=dict)
    warnings: dict[str, Check] = field(default_factory=dict)
    """Shown like checks but not part of the verdict (e.g. slow failovers)."""

    def check(self, name: str) -> Check:
        return self.checks.setdefault(name, Check(name))

    def warn(self, name: str, messages: Iterable[str]) -> Check:
        warning = self.warnings.setdefault(name, Check(name))
        for message in messages:
            warning.add(message)
        return warning

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks.values())

    def table_rows(self) -> list[tuple[str, str, str]]:
        """(what, count, result) rows: observations first, then the invariants."""
        rows = [
            ("jobs", str(self.jobs), ""),
            ("slots checked", str(self.slots_checked), ""),
            ("runs", str(self.runs), ""),
            ("succeeded", str(self.succeeded), ""),
            ("late (caught up)", str(self.late), ""),
            ("retried (attempt > 1)", str(self.retried), ""),
            ("skipped (with reason)", str(self.skipped), ""),
            ("failed (with reason)", str(self.failed), ""),
            ("cancelled/timed out (with reason)", str(self.cancelled_or_timed_out), ""),
            ("executions (ledger lines)", str(self.executions), ""),
        ]
        rows += [
            (c.name, str(c.violations), "ok" if c.ok else "VIOLATED") for c in self.checks.values()
        ]
        rows += [
            (w.name, str(w.violations), "ok" if w.ok else "warn") for w in self.warnings.values()
        ]
        return rows


CHECK_NAMES = (
    "duplicate slots",
    "missing slots",
    "non-terminal runs",
    "final state without reason",
    "double executions",
    "succeeded but not executed",
    "executions unknown to the DB",
)


def _when(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%H:%M:%S")


def _ranges(seconds: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs of integers as (first, last) pairs."""
    out: list[tuple[int, int]] = []
    for s in sorted(seconds):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def parse_ledger_line(line: str) -> tuple[int, int] | None:
    """``"<run id> <attempt>"`` as integers, or None when the line is not that."""
    parts = line.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def check_ledger(
    job_ids: Sequence[int],
    runs: Sequence[RunRow],
    ledger: Mapping[int, Sequence[str]],
) -> LedgerReport:
    """Check every invariant of a chaos run.

    ``job_ids`` are the jobs the run created (a job with no run at all is a violation),
    ``runs`` every run of those jobs, ``ledger`` each job's ledger file as lines.
    """
    report = LedgerReport(jobs=len(job_ids), runs=len(runs))
    for name in CHECK_NAMES:
        report.check(name)
    by_job: dict[int, list[RunRow]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)

    # One run per slot, and a run for every slot of the window.
    for job_id in job_ids:
        job_runs = by_job.get(job_id, [])
        if not job_runs:
            report.check("missing slots").add(f"job {job_id}: no runs at all")
            continue
        counts = Counter(r.slot for r in job_runs)
        first, last = min(counts), max(counts)
        report.slots_checked += last - first + 1
        for slot, n in sorted(counts.items()):
            if n > 1:
                ids = sorted(r.id for r in job_runs if r.slot == slot)
                report.check("duplicate slots").add(
                    f"job {job_id} slot {_when(slot)}: {n} runs {ids}", n - 1
                )
        missing = set(range(first, last + 1)) - set(counts)
        for lo, hi in _ranges(missing):
            span = _when(lo) if lo == hi else f"{_when(lo)}..{_when(hi)}"
            report.check("missing slots").add(
                f"job {job_id}: no run for {span} ({hi - lo + 1} slots)", hi - lo + 1
            )

    # Every run finished, and every unhappy ending says why.
    for run in runs:
        if run.late:
            report.late += 1
        if run.attempt > 1:
            report.retried += 1
        if run.state not in TERMINAL:
            report.check("non-terminal runs").add(
                f"run {run.id} (job {run.job_id} slot {_when(run.slot)}) is {run.state}"
            )
            continue
        if run.state == "succeeded":
            report.succeeded += 1
            continue
        if run.state in NEEDS_REASON and not (run.error or "").strip():
            report.check("final state without reason").add(
                f"run {run.id} (job {run.job_id} slot {_when(run.slot)}) is {run.state} "
                "with no error"
            )
            continue
        if run.state == "skipped":
            report.skipped += 1
        elif run.state == "failed":
            report.failed += 1
        else:
            report.cancelled_or_timed_out += 1

    # The ledger: each attempt executed at most once, each success executed, nothing else.
    known = {run.id: run for run in runs}
    executed: Counter[tuple[int, int]] = Counter()
    for job_id, lines in sorted(ledger.items()):
        for line in lines:
            if not line.strip():
                continue
            report.executions += 1
            parsed = parse_ledger_line(line)
            if parsed is None:
                report.check("executions unknown to the DB").add(
                    f"job {job_id}: unreadable ledger line {line.strip()!r}"
                )
                continue
            executed[parsed] += 1
            run_id, attempt = parsed
            run = known.get(run_id)
            if run is None:
                problem = "no such run of these jobs"
            elif run.job_id != job_id:
                problem = f"run of job {run.job_id} in job {job_id}'s ledger"
            elif run.state == "skipped":
                problem = "the run is recorded skipped"
            elif attempt < 1 or attempt > run.attempt:
                problem = f"the run's last attempt is {run.attempt}"
            else:
                continue
            report.check("executions unknown to the DB").add(
                f"run {run_id} attempt {attempt} executed: {problem}"
            )
    for (run_id, attempt), n in sorted(executed.items()):
        if n > 1:
            report.check("double executions").add(
                f"run {run_id} attempt {attempt} executed {n} times", n - 1
            )
    for run in runs:
        if run.state == "succeeded" and (run.id, run.attempt) not in executed:
            report.check("succeeded but not executed").add(
                f"run {run.id} attempt {run.attempt} succeeded but is not in the ledger"
            )
    return report


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned text table (no dependency, stable for tests and logs)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
