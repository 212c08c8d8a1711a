"""The leader places runs only on workers whose own allowlist lets the command through.

Real processes: one controller, a strict worker (``CHRONORAFT_WORKER_ALLOWED_COMMANDS=/bin/echo``)
and an unrestricted one. The strict worker is ``w1`` on purpose: between two idle workers
placement breaks the tie by id, so without the allowlist in the heartbeat a ``/bin/date`` run
would go to ``w1`` first and fail there with ``not_allowed``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from common.grpc_auth import GrpcSecurity
from controller.local_cluster import LocalCluster
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc
from tests.helpers import api, unique, wait_until

pytestmark = pytest.mark.cluster

NOT_ALLOWED_ANYWHERE = "no live worker allows command"


def manual_job(base: str, command: str, args: list[str]) -> dict[str, Any]:
    """A paused job that only runs when triggered (no slot fires during the test)."""
    body = {
        "name": unique("allow"),
        "schedule": "0 3 * * *",
        "paused": True,
        "command": command,
        "args": args,
    }
    status, job = api("POST", base, "/api/v1/jobs", body)
    assert status == 201, job
    return job


def trigger(base: str, job: dict[str, Any]) -> int:
    status, run = api("POST", base, f"/api/v1/jobs/{job['id']}/trigger")
    assert status == 201, run
    return int(run["id"])


def run_of(base: str, run_id: int) -> dict[str, Any]:
    status, run = api("GET", base, f"/api/v1/runs/{run_id}")
    assert status == 200, run
    return run


ACTIVE = ("pending", "dispatched", "running")


def finished(base: str, run_ids: list[int]) -> list[dict[str, Any]] | None:
    runs = [run_of(base, r) for r in run_ids]
    return runs if all(r["state"] not in ACTIVE for r in runs) else None


def fleet(cluster: LocalCluster) -> dict[str, Any]:
    info = cluster.cluster_info("c1")
    return {w["id"]: w for w in info["workers"]} if info else {}


def test_runs_go_only_to_workers_whose_allowlist_allows_their_command(
    make_cluster: Any,
) -> None:
    cluster: LocalCluster = make_cluster(controllers=1, workers=0)
    strict = cluster.add_worker()
    cluster.nodes[strict].env["CHRONORAFT_WORKER_ALLOWED_COMMANDS"] = "/bin/echo"
    open_worker = cluster.add_worker()
    assert (strict, open_worker) == ("w1", "w2")
    cluster.start(strict)
    cluster.start(open_worker)
    workers = wait_until("both workers to register", lambda: len(fleet(cluster)) == 2, 30)
    workers = fleet(cluster)
    assert workers[strict]["allowed_commands"] == ["/bin/echo"]
    assert workers[open_worker]["allowed_commands"] is None

    base = cluster.url("c1")
    date = manual_job(base, "/bin/date", ["-u"])
    echo = manual_job(base, "/bin/echo", ["hello"])
    # More date runs than one worker's capacity (4): some wait for room on w2, none goes to w1.
    date_runs = [trigger(base, date) for _ in range(6)]
    echo_runs = [trigger(base, echo) for _ in range(4)]
    done = wait_until("every run to finish", lambda: finished(base, date_runs + echo_runs), 30)
    by_id = {r["id"]: r for r in done}
    assert [(by_id[r]["state"], by_id[r]["worker_id"]) for r in date_runs] == [
        ("succeeded", open_worker)
    ] * len(date_runs)
    assert all(by_id[r]["state"] == "succeeded" for r in echo_runs), done
    assert {by_id[r]["worker_id"] for r in echo_runs} <= {strict, open_worker}

    # Without the unrestricted worker nobody may run /bin/date: the run waits, it does not fail.
    cluster.stop(open_worker)
    assert not cluster.nodes[open_worker].alive()
    waiting = trigger(base, date)
    warning = f"run {waiting} stays pending: {NOT_ALLOWED_ANYWHERE}"
    leader_log = cluster.nodes["c1"].log_path
    wait_until("the leader to say why the run waits", lambda: warning in leader_log.read_text(), 20)
    # The dispatcher keeps going meanwhile (echo still runs on the strict worker) and neither
    # fails the waiting run nor repeats the warning on every tick.
    for _ in range(2):
        echo_run = [trigger(base, echo)]
        ran = wait_until("echo on the strict worker", lambda r=echo_run: finished(base, r), 20)
        assert (ran[0]["state"], ran[0]["worker_id"]) == ("succeeded", strict)
    run = run_of(base, waiting)
    assert (run["state"], run["worker_id"]) == ("pending", None), run
    assert leader_log.read_text().count(warning) == 1

    cluster.start(open_worker)
    ran = wait_until("the waiting run once w2 is back", lambda: finished(base, [waiting]), 30)
    assert (ran[0]["state"], ran[0]["worker_id"]) == ("succeeded", open_worker)


def test_a_worker_that_refuses_anyway_fails_the_run_and_dispatch_carries_on(
    make_cluster: Any,
) -> None:
    """The backstop: the leader's view of an allowlist can be wrong (the worker's list changed
    since its heartbeat, or an older worker does not report it). Then the worker refuses with
    ``not_allowed`` and the leader fails the attempt instead of bouncing the run forever.

    Here the test itself heartbeats as ``w0-old``, an unrestricted worker whose address is
    the strict worker's: the leader believes it may run anything and prefers it (id order).
    """
    cluster: LocalCluster = make_cluster(controllers=1, workers=0)
    strict = cluster.add_worker()
    cluster.nodes[strict].env["CHRONORAFT_WORKER_ALLOWED_COMMANDS"] = "/bin/echo"
    cluster.start(strict)
    wait_until("the strict worker to register", lambda: strict in fleet(cluster), 30)
    base = cluster.url("c1")
    date = manual_job(base, "/bin/date", ["-u"])
    echo = manual_job(base, "/bin/echo", ["still dispatching"])

    async def heartbeat_as_an_old_worker() -> None:
        security = GrpcSecurity(secret=cluster.grpc_secret)
        channel = security.channel(f"127.0.0.1:{cluster.grpc_base}")
        try:
            beat = pb.HeartbeatRequest(
                worker_id="w0-old", address=f"127.0.0.1:{cluster.worker_base}", capacity=4
            )
            await pb_grpc.ControllerServiceStub(channel).Heartbeat(beat, timeout=5)
        finally:
            await channel.close()

    asyncio.run(heartbeat_as_an_old_worker())
    waiting = trigger(base, date)
    ran = wait_until("the refused run to end", lambda: finished(base, [waiting]), 20)
    assert ran[0]["state"] == "failed", ran
    assert ran[0]["error"] == "refused by w0-old: not_allowed", ran
    echo_run = trigger(base, echo)
    ran = wait_until("an allowed run after the refusal", lambda: finished(base, [echo_run]), 20)
    assert ran[0]["state"] == "succeeded", ran
    assert "dispatcher failed" not in cluster.nodes["c1"].log_path.read_text()
