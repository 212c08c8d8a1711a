"""``chronoraft chaos``: random faults against a private local cluster, then a ledger check.

Starts its own PostgreSQL and a 3-controller, 2-worker :class:`LocalCluster` on free ports,
creates jobs that fire every second and append ``"$CHRONORAFT_RUN_ID $CHRONORAFT_ATTEMPT"``
to a ledger file, and for ``--duration`` injects one fault at a time (SIGKILL or SIGSTOP of a
controller or a worker, a PostgreSQL stop), waiting for the whole cluster to be healthy again
before the next. Only one node is ever down, so a majority of controllers always stands.
Then it pauses the jobs, waits for every run to finish and checks the invariants of
DESIGN.md against PostgreSQL and the ledger files (:mod:`controller.chaos_ledger`).

For faults aimed at the leader it also times the failover (until a successor's claim of
the next epoch commits in PostgreSQL) and reports slow ones as warnings, naming what blocked
the claim; they do not fail the run, whose verdict is the ledger.

The random choices come from ``--seed`` (printed), so a failing sequence of faults can be
replayed; the timing of real processes on a busy machine of course cannot.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from common import db
from common.durations import DurationError, parse_duration
from common.pgserver import PgServer, PgServerError
from controller.chaos_ledger import LedgerReport, RunRow, check_ledger, format_table
from controller.local_cluster import ClusterError, LocalCluster, free_port_block, http_json

T = TypeVar("T")

KILL_CONTROLLER = "kill-controller"
STOP_CONTROLLER = "stop-controller"
KILL_WORKER = "kill-worker"
STOP_WORKER = "stop-worker"
STOP_POSTGRES = "stop-postgres"

# kind -> (weight, shortest hold, longest hold): how long the target stays down.
FAULTS: dict[str, tuple[int, float, float]] = {
    KILL_CONTROLLER: (3, 1.5, 4.0),
    STOP_CONTROLLER: (3, 1.5, 5.0),
    KILL_WORKER: (2, 1.5, 4.0),
    STOP_WORKER: (2, 1.0, 4.0),
    STOP_POSTGRES: (2, 2.0, 5.0),
}
GAP = (1.0, 3.0)
"""Seconds of calm between a recovered fault and the next one."""
WORKER_LEASE = 3
RECOVERY_TIMEOUT = 90.0
SLOW_FAILOVER = 2.5
"""A successor claiming the epoch later than this after the leader went down is reported."""
SETTLE_TIMEOUT = 120.0
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled", "skipped")

RUNS_QUERY = """
SELECT id, job_id, scheduled_for, state, late, attempt, error
FROM runs WHERE job_id = ANY(%(ids)s) ORDER BY job_id, scheduled_for, id
"""
UNFINISHED_QUERY = """
SELECT count(*) FROM runs WHERE job_id = ANY(%(ids)s) AND NOT state = ANY(%(terminal)s)
"""
JOBS_WITH_SUCCESS_QUERY = """
SELECT count(DISTINCT job_id) FROM runs WHERE job_id = ANY(%(ids)s) AND state = 'succeeded'
"""
EPOCHS_QUERY = "SELECT epoch, node_id FROM leadership_log ORDER BY epoch"
# A plain read: it sees a claim once committed and is never blocked by the fencing locks.
CURRENT_EPOCH_QUERY = "SELECT epoch FROM leadership WHERE id = 1"
BLOCKED_CLAIM_QUERY = """
SELECT a.pid, b.pid AS blocker, b.state AS blocker_state, left(b.query, 40) AS blocker_query
FROM pg_stat_activity a JOIN pg_stat_activity b ON b.pid = ANY(pg_blocking_pids(a.pid))
WHERE a.datname = current_database() AND a.query LIKE 'UPDATE leadership%'
"""


class ChaosError(RuntimeError):
    """The chaos run could not be carried out (not a verdict on chronoraft)."""


@dataclass(frozen=True)
class FaultPlan:
    """The seeded part of one fault; the target is resolved against the live cluster."""

    kind: str
    gap: float
    hold: float
    at_leader: bool
    pick: int

    def target(self, candidates: list[str], leader: str | None) -> str:
        """The node to hit: the leader when aimed at it, else one of the others."""
        if self.at_leader and leader in candidates:
            return leader
        others = [c for c in candidates if c != leader] or candidates
        return others[self.pick % len(others)]


def plan_fault(rng: random.Random) -> FaultPlan:
    kinds = list(FAULTS)
    kind = rng.choices(kinds, weights=[FAULTS[k][0] for k in kinds])[0]
    _, low, high = FAULTS[kind]
    return FaultPlan(
        kind=kind,
        gap=round(rng.uniform(*GAP), 1),
        hold=round(rng.uniform(low, high), 1),
        at_leader=rng.random() < 0.6,
        pick=rng.randrange(1000),
    )


@dataclass
class FaultRecord:
    kind: str
    target: str
    at: float
    wall: datetime
    held: float = 0.0
    recovered_after: float | None = None
    note: str = ""
    at_leader: bool = False
    failover_after: float | None = None
    """Seconds from the fault until a successor's claim committed (leader faults only)."""
    claim_blocked_by: str = ""

    @property
    def slow_failover(self) -> bool:
        if not self.at_leader:
            return False
        if self.failover_after is None:
            return self.held > SLOW_FAILOVER
        return self.failover_after > SLOW_FAILOVER


def _fmt_seconds(value: float | None) -> str:
    return "NOT RECOVERED" if value is None else f"{value:.1f}s"


def fault_table(faults: list[FaultRecord]) -> str:
    rows = [
        (
            str(i),
            f.kind,
            f.target,
            f"+{f.at:.1f}s",
            f.wall.strftime("%H:%M:%S"),
            f"{f.held:.1f}s",
            _fmt_seconds(f.recovered_after),
            f.note,
        )
        for i, f in enumerate(faults, 1)
    ]
    headers = ("#", "kind", "target", "at", "utc", "held", "recovered after", "note")
    return format_table(headers, rows)


def _wait(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            raise ChaosError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _say(message: str) -> None:
    print(f"chaos: {message}", flush=True)


class ChaosRun:
    """One chaos run: owns the PostgreSQL server and the cluster it starts."""

    def __init__(self, base_dir: Path, duration: float, jobs: int, seed: int) -> None:
        self.base_dir = base_dir
        self.duration = duration
        self.job_count = jobs
        self.seed = seed
        self.rng = random.Random(seed)
        self.pg: PgServer | None = None
        self.cluster: LocalCluster | None = None
        self.job_ids: list[int] = []
        self.ledger_dir = base_dir / "ledgers"
        self.faults: list[FaultRecord] = []
        self.crashes: list[str] = []
        self.down: set[str] = set()
        self.started = 0.0

    # ----- setup -----

    def start(self) -> None:
        self.ledger_dir.mkdir(parents=True, exist_ok=True)
        _say("starting a private PostgreSQL ...")
        self.pg = PgServer.create()
        self.pg.start()
        db.migrate(self.pg.url)
        base = free_port_block(40)
        self.cluster = LocalCluster(
            base_dir=self.base_dir,
            database_url=self.pg.url,
            controllers=3,
            workers=2,
            http_base=base,
            raft_base=base + 5,
            grpc_base=base + 10,
            worker_base=base + 15,
            worker_http_base=base + 25,
            extra_env={"CHRONORAFT_WORKER_LEASE": str(WORKER_LEASE)},
        )
        _say(f"starting 3 controllers and 2 workers (ports from {base}) ...")
        self.cluster.start_all()
        leader = self.cluster.wait_ready(timeout=RECOVERY_TIMEOUT)
        _say(f"cluster ready, leader {leader}")

    def create_jobs(self) -> None:
        cluster = self._cluster()
        base = cluster.url(cluster.leader() or "c1")
        for i in range(1, self.job_count + 1):
            name = f"chaos-{i}"
            ledger = self._ledger_path(i)
            ledger.touch()
            body = {
                "name": name,
                "schedule": "* * * * * *",
                "command": f'echo "$CHRONORAFT_RUN_ID $CHRONORAFT_ATTEMPT" >> {ledger}',
                "max_retries": 2,
                "retry_backoff": "1s",
            }
            status, job = http_json(
                "POST", f"{base}/api/v1/jobs", body, timeout=10, token=cluster.admin_token
            )
            if status != 201:
                raise ChaosError(f"cannot create job {name}: {status} {job}")
            self.job_ids.append(int(job["id"]))
        _say(f"created {len(self.job_ids)} jobs firing every second")

    def _cluster(self) -> LocalCluster:
        assert self.cluster is not None
        return self.cluster

    def _pg(self) -> PgServer:
        assert self.pg is not None
        return self.pg

    def _ledger_path(self, job_number: int) -> Path:
        return self.ledger_dir / f"chaos-{job_number}.ledger"

    # ----- health -----

    def _notice_crashes(self) -> None:
        """A node that exited although we did not take it down is a finding: note, restart."""
        cluster = self._cluster()
        for name, node in cluster.nodes.items():
            if name in self.down or node.proc is None or node.proc.poll() is None:
                continue
            message = (
                f"{name} exited on its own with code {node.proc.returncode} "
                f"at +{time.monotonic() - self.started:.1f}s"
            )
            self.crashes.append(message)
            _say(f"VIOLATION: {message}; restarting it")
            cluster.start(name)

    def healthy(self) -> str | None:
        """The leader's name when every node is up and sees everyone, else None."""
        cluster = self._cluster()
        self._notice_crashes()
        if not self._pg().is_running():
            return None
        leader = cluster.leader()
        if leader is None:
            return None
        infos = {}
        for name in cluster.controller_names:
            info = cluster.cluster_info(name, timeout=2.0)
            if not info or info["raft"]["leader"] is None:
                return None
            if not all(p["connected"] for p in info["peers"]):
                return None
            infos[name] = info
        workers = {w["id"] for w in infos[leader]["workers"]}
        if not set(cluster.worker_names) <= workers:
            return None
        for name in cluster.worker_names:
            status, _ = http_json("GET", cluster.url(name) + "/healthz", timeout=2.0)
            if status != 200:
                return None
        return leader

    def wait_healthy(self, what: str) -> str:
        return _wait(what, self.healthy, RECOVERY_TIMEOUT)

    # ----- faults -----

    def inject(self, plan: FaultPlan) -> FaultRecord:
        cluster, pg = self._cluster(), self._pg()
        leader = cluster.leader()
        if plan.kind in (KILL_CONTROLLER, STOP_CONTROLLER):
            target = plan.target(cluster.controller_names, leader)
        elif plan.kind in (KILL_WORKER, STOP_WORKER):
            target = plan.target(cluster.worker_names, None)
        else:
            target = "postgres"
        label = f"{target} (leader)" if target == leader else target
        record = FaultRecord(plan.kind, label, time.monotonic() - self.started, datetime.now(UTC))
        record.at_leader = target == leader and plan.kind in (KILL_CONTROLLER, STOP_CONTROLLER)
        watch = self._epoch_watch() if record.at_leader else None
        t0 = time.monotonic()
        _say(f"fault {len(self.faults) + 1}: {plan.kind} {label} for {plan.hold:g}s")
        self.down.add(target)
        self.faults.append(record)
        if plan.kind in (KILL_CONTROLLER, KILL_WORKER):
            cluster.kill(target)
            self._hold(plan.hold, t0, record, watch)
            cluster.start(target)
        elif plan.kind in (STOP_CONTROLLER, STOP_WORKER):
            cluster.signal(target, signal.SIGSTOP)
            try:
                self._hold(plan.hold, t0, record, watch)
            finally:
                cluster.signal(target, signal.SIGCONT)
        else:  # on Ctrl-C mid-outage the cleanup removes the stopped server as it is
            pg.stop("fast")
            time.sleep(plan.hold)
            pg.start()
        record.held = time.monotonic() - t0
        self.down.discard(target)
        if watch is not None:
            if record.failover_after is None:
                self._await_claim(record, t0, watch)
            watch[0].close()
        try:
            new_leader = self.wait_healthy(f"recovery from {plan.kind} {label}")
        except ChaosError as exc:
            record.note = str(exc)
            _say(f"VIOLATION: {exc}")
            return record
        record.recovered_after = time.monotonic() - t0
        notes = []
        if new_leader != leader:
            notes.append(f"leader {leader} -> {new_leader}")
        if record.failover_after is not None:
            notes.append(f"new epoch after {record.failover_after:.1f}s")
        if record.claim_blocked_by:
            notes.append(f"claim blocked by {record.claim_blocked_by}")
        record.note = "; ".join(notes)
        if record.slow_failover:
            _say(f"slow failover: {record.note or 'no new epoch'} (held {record.held:.1f}s)")
        return record

    def _epoch_watch(self) -> tuple[Any, int] | None:
        """A connection that polls the leadership row, and the epoch before the fault."""
        import psycopg

        try:
            conn = psycopg.connect(self._pg().url, autocommit=True, connect_timeout=3)
            row = conn.execute(CURRENT_EPOCH_QUERY).fetchone()
        except psycopg.Error:
            return None
        return conn, int(row[0]) if row else 0

    def _claimed(self, watch: tuple[Any, int] | None) -> bool:
        if watch is None:
            return False
        try:
            row = watch[0].execute(CURRENT_EPOCH_QUERY).fetchone()
        except Exception:  # noqa: BLE001 - a measurement, never a reason to stop the run
            return False
        return bool(row) and int(row[0]) > watch[1]

    def _hold(
        self, seconds: float, t0: float, record: FaultRecord, watch: tuple[Any, int] | None
    ) -> None:
        """Keep the fault on for ``seconds``; meanwhile time the successor's claim.

        When no claim has committed ``SLOW_FAILOVER`` seconds in, ask PostgreSQL who blocks
        it: a leader frozen inside a fenced transaction still holds its ``FOR SHARE`` lock.
        """
        end = t0 + seconds
        asked = False
        while time.monotonic() < end:
            if record.failover_after is None and self._claimed(watch):
                record.failover_after = time.monotonic() - t0
            if (
                watch is not None
                and record.failover_after is None
                and not asked
                and time.monotonic() - t0 > SLOW_FAILOVER
            ):
                asked = True
                record.claim_blocked_by = self._claim_blocker(watch)
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def _claim_blocker(self, watch: tuple[Any, int]) -> str:
        try:
            rows = watch[0].execute(BLOCKED_CLAIM_QUERY).fetchall()
        except Exception:  # noqa: BLE001
            return ""
        return "; ".join(f"pid {r[1]} {r[2]}: {r[3]!r}" for r in rows)

    def _await_claim(self, record: FaultRecord, t0: float, watch: tuple[Any, int]) -> None:
        """After the hold: a successor may still be about to claim (or the node came back)."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while time.monotonic() < deadline:
            if self._claimed(watch):
                record.failover_after = time.monotonic() - t0
                return
            if time.monotonic() - t0 > record.held + 2.0 and self._cluster().leader():
                return  # someone leads again without a new claim: the old leader kept it
            time.sleep(0.05)

    def run_faults(self) -> None:
        self.started = time.monotonic()
        while time.monotonic() - self.started < self.duration:
            plan = plan_fault(self.rng)
            remaining = self.duration - (time.monotonic() - self.started)
            time.sleep(min(plan.gap, max(remaining, 0.0)))
            if time.monotonic() - self.started >= self.duration:
                break
            if self.inject(plan).recovered_after is None:
                _say("the cluster did not recover: no more faults, checking what happened")
                break
        _say(f"fault phase over after {time.monotonic() - self.started:.1f}s")

    # ----- the end: settle and check -----

    def _count(self, query: str, **params: Any) -> int:
        import psycopg

        with psycopg.connect(self._pg().url, connect_timeout=5) as conn:
            row = conn.execute(query, {"ids": self.job_ids, **params}).fetchone()
        return int(row[0]) if row else 0

    def wait_first_runs(self) -> None:
        """Every job has succeeded once before any fault: the baseline works."""
        _wait(
            "every job to succeed once",
            lambda: self._count(JOBS_WITH_SUCCESS_QUERY) == len(self.job_ids),
            RECOVERY_TIMEOUT,
            0.5,
        )

    def pause_jobs(self) -> None:
        """Pause through the REST API (any live controller; writes work on followers)."""
        cluster = self._cluster()
        todo = list(self.job_ids)

        def pause_all() -> bool:
            names = [n for n in cluster.controller_names if cluster.nodes[n].alive()]
            for job_id in list(todo):
                for name in names:
                    url = f"{cluster.url(name)}/api/v1/jobs/{job_id}/pause"
                    try:
                        status, _ = http_json("POST", url, timeout=10, token=cluster.admin_token)
                    except OSError:
                        continue
                    if status == 200:
                        todo.remove(job_id)
                        break
            return not todo

        _wait("every job to pause", pause_all, 60.0, interval=1.0)
        _say("paused every job")

    def wait_terminal(self) -> None:
        started = time.monotonic()
        try:
            _wait(
                "every run to finish",
                lambda: self._count(UNFINISHED_QUERY, terminal=list(TERMINAL)) == 0,
                SETTLE_TIMEOUT,
                0.5,
            )
        except ChaosError as exc:
            _say(f"{exc}; checking anyway")
            return
        _say(f"every run finished {time.monotonic() - started:.1f}s after the pause")

    def collect(self) -> tuple[list[RunRow], dict[int, list[str]], list[tuple[int, str]]]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self._pg().url, connect_timeout=5, row_factory=dict_row) as conn:
            rows = conn.execute(RUNS_QUERY, {"ids": self.job_ids}).fetchall()
            epochs = [(int(r["epoch"]), r["node_id"]) for r in conn.execute(EPOCHS_QUERY)]
        runs = [
            RunRow(
                id=int(r["id"]),
                job_id=int(r["job_id"]),
                scheduled_for=r["scheduled_for"],
                state=r["state"],
                late=bool(r["late"]),
                attempt=int(r["attempt"]),
                error=r["error"],
            )
            for r in rows
        ]
        ledger = {
            job_id: self._ledger_path(i).read_text().splitlines()
            for i, job_id in enumerate(self.job_ids, 1)
        }
        return runs, ledger, epochs

    def check(self) -> tuple[LedgerReport, list[tuple[int, str]]]:
        self._notice_crashes()
        try:
            self.pause_jobs()
        except ChaosError as exc:
            _say(f"{exc}; checking anyway")
        self.wait_terminal()
        runs, ledger, epochs = self.collect()
        report = check_ledger(self.job_ids, runs, ledger)
        self._notice_crashes()  # also those that died while the runs settled
        crash_check = report.check("nodes that died on their own")
        for message in self.crashes:
            crash_check.add(message)
        recovery = report.check("faults not recovered")
        for fault in self.faults:
            if fault.recovered_after is None:
                recovery.add(f"{fault.kind} {fault.target}: {fault.note}")
        report.warn(
            f"leader faults with failover > {SLOW_FAILOVER:g}s",
            [
                f"{f.kind} {f.target} at +{f.at:.1f}s held {f.held:.1f}s: "
                f"{f.note or 'no new epoch during the fault'}"
                for f in self.faults
                if f.slow_failover
            ],
        )
        return report, epochs

    # ----- teardown -----

    def cleanup(self) -> None:
        """Stop everything this run started, whatever state the faults left it in."""
        if self.cluster is not None:
            for name in self.cluster.nodes:
                try:  # a stopped node must be resumed to hear SIGTERM
                    self.cluster.signal(name, signal.SIGCONT)
                except OSError:
                    pass
            try:
                self.cluster.stop_all()
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                _say(f"stopping the cluster: {exc}")
                for name in self.cluster.nodes:
                    try:
                        self.cluster.kill(name)
                    except Exception:  # noqa: BLE001
                        pass
        if self.pg is not None:
            try:
                if self.pg.log_file.exists():
                    logs = self.base_dir / "logs"
                    logs.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(self.pg.log_file, logs / "postgres.log")
            except OSError:
                pass
            try:
                self.pg.destroy()
            except Exception as exc:  # noqa: BLE001
                _say(f"removing PostgreSQL at {self.pg.base_dir}: {exc}")

    def print_logs(self, lines: int = 25) -> None:
        logs = self.base_dir / "logs"
        print(f"\nlogs kept in {logs}", flush=True)
        if self.cluster is None:
            return
        for name in self.cluster.nodes:
            print(f"--- {name}: last {lines} lines of {self.cluster.nodes[name].log_path} ---")
            print(self.cluster.tail(name, lines))
        sys.stdout.flush()


def _default_base_dir() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(".chronoraft") / "chaos" / f"{stamp}-{os.getpid()}"


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def print_summary(chaos: ChaosRun, report: LedgerReport, epochs: list[tuple[int, str]]) -> None:
    print()
    print(f"Faults injected (seed {chaos.seed})")
    print(fault_table(chaos.faults) if chaos.faults else "(none)")
    print()
    claims = ", ".join(f"{e}:{n}" for e, n in epochs)
    print(f"leaderships (epoch:node): {claims or '(none)'}")
    print()
    print("Invariants")
    print(format_table(("check", "count", "result"), report.table_rows()))
    failing = [c for c in report.checks.values() if not c.ok]
    for check in failing + [w for w in report.warnings.values() if not w.ok]:
        print(f"\n{check.name}: {check.violations}")
        for example in check.examples:
            print(f"  - {example}")
        if check.violations > len(check.examples):
            print(f"  ... and {check.violations - len(check.examples)} more")
    print()
    print(f"faults injected: {len(chaos.faults)}")
    print(f"chaos: {'PASS' if report.passed else 'FAIL'}", flush=True)


def run_chaos(args: argparse.Namespace) -> int:
    try:
        duration = parse_duration(args.duration, "duration", minimum=1)
    except DurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("error: jobs: must be at least 1", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    base_dir = Path(args.base_dir) if args.base_dir else _default_base_dir()
    base_dir = base_dir.resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    _say(f"seed {seed}, duration {duration:g}s, {args.jobs} jobs, base dir {base_dir}")
    chaos = ChaosRun(base_dir, duration, args.jobs, seed)
    # Installed explicitly: a process started in the background inherits SIGINT ignored.
    previous_int = signal.signal(signal.SIGINT, _raise_interrupt)
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    code = 1
    try:
        chaos.start()
        chaos.create_jobs()
        chaos.wait_first_runs()
        chaos.run_faults()
        report, epochs = chaos.check()
        print_summary(chaos, report, epochs)
        code = 0 if report.passed else 1
    except KeyboardInterrupt:
        _say("interrupted; cleaning up")
        code = 130
    except (ChaosError, ClusterError, PgServerError) as exc:
        _say(f"FAIL: {exc}")
        if chaos.faults:
            print(fault_table(chaos.faults))
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if code == 1:
                chaos.print_logs()
            chaos.cleanup()
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)
    _say(f"cleaned up; logs and ledgers in {base_dir}")
    return code
