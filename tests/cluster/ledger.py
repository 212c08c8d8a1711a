"""The ledger used by fault tests: a job that records each execution, and the checks that
every slot ran exactly once or was skipped with a reason."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.local_cluster import LocalCluster
from tests.helpers import all_runs, api, unique, wait_until

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled", "skipped"}


def create_ledger_job(base: str, ledger: Path, **extra: Any) -> dict[str, Any]:
    """A job that appends its run id to a file, so duplicate executions are visible."""
    body = {
        "name": unique("ledger"),
        "schedule": "* * * * * *",
        "command": f'echo "$CHRONORAFT_RUN_ID $CHRONORAFT_ATTEMPT" >> {ledger}',
        **extra,
    }
    status, job = api("POST", base, "/api/v1/jobs", body)
    assert status == 201, job
    return job


def settle(cluster: LocalCluster, job_id: int) -> list[dict[str, Any]]:
    """Pause the job, then wait until every run of it is terminal; returns the runs."""
    base = cluster.url(cluster.leader() or cluster.controller_names[0])
    assert api("POST", base, f"/api/v1/jobs/{job_id}/pause")[0] == 200

    def all_terminal() -> list[dict[str, Any]] | None:
        runs = all_runs(base, job_id)
        return runs if runs and all(r["state"] in TERMINAL for r in runs) else None

    return wait_until("every run to reach a final state", all_terminal, timeout=60)


def assert_every_slot_once(runs: list[dict[str, Any]], ledger: Path) -> None:
    slots = [datetime.fromisoformat(r["scheduled_for"]) for r in runs]
    seconds = sorted(int(s.timestamp()) for s in slots)
    dupes = [s for s, n in Counter(seconds).items() if n > 1]
    assert not dupes, f"slots fired twice: {dupes}"
    missing = sorted(set(range(seconds[0], seconds[-1] + 1)) - set(seconds))
    assert not missing, f"slots with no run at all: {missing}"
    for run in runs:
        assert run["state"] in ("succeeded", "skipped"), run
        if run["state"] == "skipped":
            assert run["error"], f"skipped without a reason: {run}"
    executed = Counter(line.split()[0] for line in ledger.read_text().splitlines())
    twice = {rid: n for rid, n in executed.items() if n > 1}
    assert not twice, f"runs executed more than once: {twice}"
    succeeded = {str(r["id"]) for r in runs if r["state"] == "succeeded"}
    assert set(executed) == succeeded
