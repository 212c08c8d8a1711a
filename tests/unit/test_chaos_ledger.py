"""The chaos run's verdict: each way a scheduler can break the ledger is caught and named."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from controller.chaos import FAULTS, FaultPlan, plan_fault
from controller.chaos_ledger import RunRow, check_ledger, format_table, parse_ledger_line

T0 = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)
JOB = 7


def run(run_id: int, second: int, state: str = "succeeded", **kw: object) -> RunRow:
    return RunRow(
        id=run_id,
        job_id=kw.pop("job_id", JOB),  # type: ignore[arg-type]
        scheduled_for=T0 + timedelta(seconds=second),
        state=state,
        **kw,  # type: ignore[arg-type]
    )


def clean(n: int = 5) -> tuple[list[RunRow], dict[int, list[str]]]:
    """n consecutive slots, each succeeded on attempt 1 and executed once."""
    runs = [run(100 + i, i) for i in range(n)]
    return runs, {JOB: [f"{r.id} 1" for r in runs]}


def violations(report: object) -> dict[str, int]:
    return {c.name: c.violations for c in report.checks.values() if not c.ok}  # type: ignore[attr-defined]


def test_every_slot_once_and_executed_once_passes() -> None:
    runs, ledger = clean()
    report = check_ledger([JOB], runs, ledger)
    assert report.passed, violations(report)
    assert (report.slots_checked, report.succeeded, report.executions) == (5, 5, 5)


def test_a_duplicate_slot_is_detected() -> None:
    runs, ledger = clean()
    runs.append(run(200, 2))
    ledger[JOB].append("200 1")
    report = check_ledger([JOB], runs, ledger)
    assert violations(report) == {"duplicate slots": 1}
    assert "[102, 200]" in report.checks["duplicate slots"].examples[0]


def test_a_gap_is_detected_and_sized() -> None:
    runs, ledger = clean(6)
    runs = [r for r in runs if r.slot - int(T0.timestamp()) not in (2, 3)]
    ledger = {JOB: [f"{r.id} 1" for r in runs]}
    report = check_ledger([JOB], runs, ledger)
    assert violations(report) == {"missing slots": 2}
    assert "12:00:02..12:00:03 (2 slots)" in report.checks["missing slots"].examples[0]
    assert report.slots_checked == 6


def test_a_job_without_any_run_is_a_gap() -> None:
    runs, ledger = clean()
    report = check_ledger([JOB, 8], runs, {**ledger, 8: []})
    assert violations(report) == {"missing slots": 1}


def test_a_skipped_run_without_a_reason_is_detected() -> None:
    runs, ledger = clean()
    runs[3] = run(103, 3, "skipped", error="")
    ledger[JOB].remove("103 1")
    report = check_ledger([JOB], runs, ledger)
    assert violations(report) == {"final state without reason": 1}


def test_skipped_and_failed_with_reasons_pass_and_are_counted() -> None:
    runs, ledger = clean()
    runs[1] = run(101, 1, "skipped", error="missed: older than catchup_window 60s")
    runs[2] = run(102, 2, "failed", attempt=3, error="worker w1 lost: no heartbeat for 3s")
    runs[3] = run(103, 3, late=True)
    ledger[JOB] = ["100 1", "102 1", "102 2", "103 1", "104 1"]
    report = check_ledger([JOB], runs, ledger)
    assert report.passed, violations(report)
    assert (report.skipped, report.failed, report.late, report.retried) == (1, 1, 1, 1)


def test_cancelled_or_timed_out_needs_a_reason() -> None:
    runs, ledger = clean()
    runs[0] = run(100, 0, "cancelled", error="cancelled by request")
    runs[1] = run(101, 1, "timed_out")
    report = check_ledger([JOB], runs, ledger)
    assert violations(report) == {"final state without reason": 1}
    assert report.cancelled_or_timed_out == 1
    assert "run 101" in report.checks["final state without reason"].examples[0]


def test_a_run_left_running_is_detected() -> None:
    runs, ledger = clean()
    runs[4] = run(104, 4, "running")
    ledger[JOB].remove("104 1")
    report = check_ledger([JOB], runs, ledger)
    assert violations(report) == {"non-terminal runs": 1}


def test_a_double_execution_of_one_attempt_is_detected() -> None:
    runs, ledger = clean()
    ledger[JOB].append("102 1")
    report = check_ledger([JOB], runs, ledger)
    assert violations(report) == {"double executions": 1}
    assert report.checks["double executions"].examples == ["run 102 attempt 1 executed 2 times"]


def test_a_retry_is_a_new_attempt_not_a_double_execution() -> None:
    runs, ledger = clean()
    runs[2] = run(102, 2, attempt=2)
    ledger[JOB].append("102 2")  # attempt 1 ran, its worker was lost, attempt 2 ran again
    report = check_ledger([JOB], runs, ledger)
    assert report.passed, violations(report)


def test_a_success_missing_from_the_ledger_is_detected() -> None:
    runs, ledger = clean()
    runs[2] = run(102, 2, attempt=2)  # succeeded on attempt 2, but only attempt 1 ran
    report = check_ledger([JOB], runs, ledger)
    assert violations(report) == {"succeeded but not executed": 1}


def test_executions_the_database_does_not_know_are_detected() -> None:
    runs, ledger = clean()
    runs[1] = run(101, 1, "skipped", error="missed: older than catchup_window 60s")
    ledger[JOB] += ["999 1", "100 2", "garbage"]  # unknown run, future attempt, unreadable
    report = check_ledger([JOB], runs, {**ledger, 8: ["103 1"]})  # another job's run
    # 101 was skipped yet executed; 103 was executed twice (once via the wrong ledger).
    assert violations(report) == {"executions unknown to the DB": 5, "double executions": 1}


def test_examples_are_capped_but_counts_are_not() -> None:
    runs = [run(i, i * 2) for i in range(30)]  # every other second missing
    report = check_ledger([JOB], runs, {JOB: [f"{r.id} 1" for r in runs]})
    missing = report.checks["missing slots"]
    assert missing.violations == 29 and len(missing.examples) == 10


def test_warnings_are_shown_but_do_not_fail_the_run() -> None:
    runs, ledger = clean()
    report = check_ledger([JOB], runs, ledger)
    report.warn("leader faults with failover > 2.5s", ["stop-controller c1 (leader): 6.0s"])
    assert report.passed
    assert ("leader faults with failover > 2.5s", "1", "warn") in report.table_rows()


def test_ledger_lines_parse_strictly() -> None:
    assert parse_ledger_line("12 3") == (12, 3)
    assert parse_ledger_line(" 12 3\n") == (12, 3)
    assert parse_ledger_line("12") is None
    assert parse_ledger_line("12 -1") is None
    assert parse_ledger_line("a b") is None


def test_table_is_aligned() -> None:
    text = format_table(("check", "count"), [("missing slots", "0"), ("x", "12")])
    assert text.splitlines() == [
        "check          count",
        "-------------  -----",
        "missing slots  0",
        "x              12",
    ]


def test_the_same_seed_plans_the_same_faults() -> None:
    a, b = random.Random(7), random.Random(7)
    assert [plan_fault(a) for _ in range(20)] == [plan_fault(b) for _ in range(20)]
    assert {p.kind for p in (plan_fault(a) for _ in range(200))} == set(FAULTS)


def test_a_fault_aimed_at_the_leader_hits_it_and_others_spare_it() -> None:
    names = ["c1", "c2", "c3"]
    assert FaultPlan("kill-controller", 1, 1, at_leader=True, pick=5).target(names, "c2") == "c2"
    picks = {
        FaultPlan("kill-controller", 1, 1, at_leader=False, pick=i).target(names, "c2")
        for i in range(10)
    }
    assert picks == {"c1", "c3"}
    assert FaultPlan("kill-worker", 1, 1, at_leader=True, pick=3).target(["w1", "w2"], None) == "w2"
