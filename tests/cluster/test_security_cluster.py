"""Cluster traffic with real processes: a Raft password, the gRPC secret, TLS, the allowlist.

A stray or hostile process that does not know the cluster's secrets must not be able to
join Raft, disturb an election, register as a worker, or make a worker run anything.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from common.grpc_auth import GrpcSecurity
from common.settings import Settings
from controller.leader.worker_client import WorkerClients
from controller.local_cluster import LocalCluster, Node
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc
from tests.helpers import all_runs, api, unique, wait_until

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def every_second_job(base: str, **extra: Any) -> dict[str, Any]:
    body = {"name": unique("sec"), "schedule": "@every 1s", "command": "echo tick", **extra}
    status, job = api("POST", base, "/api/v1/jobs", body)
    assert status == 201, job
    return job


def succeeded(base: str, job_id: int) -> list[dict[str, Any]]:
    return [r for r in all_runs(base, job_id) if r["state"] == "succeeded"]


def add_rogue_controller(cluster: LocalCluster, victim: str, password: str) -> str:
    """A controller that poses as ``victim`` to Raft (its address, the real peers) but has
    another password. Its REST and gRPC use the ports the test layout leaves free (base + 3).
    """
    peers = [cluster.raft_address(n) for n in ("c1", "c2", "c3") if n != victim]
    env = dict(cluster.nodes["c1"].env)
    env.pop("CHRONORAFT_RAFT_BIND", None)
    env.update(
        CHRONORAFT_NODE_ID="c4",
        CHRONORAFT_HTTP_PORT=str(cluster.http_base + 3),
        CHRONORAFT_GRPC_PORT=str(cluster.grpc_base + 3),
        CHRONORAFT_RAFT_SELF=cluster.raft_address(victim),
        CHRONORAFT_RAFT_PEERS=",".join(peers),
        CHRONORAFT_RAFT_PASSWORD=password,
    )
    log = cluster.base_dir / "logs" / "c4.log"
    cluster.nodes["c4"] = Node("c4", "controller", env, log, cluster.http_base + 3)
    cluster.start("c4")
    return "c4"


def test_a_controller_with_the_wrong_raft_password_can_neither_join_nor_disturb(
    make_cluster: Any,
) -> None:
    cluster: LocalCluster = make_cluster(workers=1)
    leader = cluster.leader()
    assert leader
    base = cluster.url(leader)
    epoch = cluster.cluster_info(leader)["epoch"]  # type: ignore[index]
    job = every_second_job(base)
    wait_until("runs before the rogue starts", lambda: len(succeeded(base, job["id"])) >= 2, 30)

    # The rogue takes the Raft address of a follower that went down: with the password it
    # would simply be let in as that follower (and could vote, campaign, lead).
    victim = next(n for n in ("c3", "c2") if n != leader)
    cluster.kill(victim)
    rogue = add_rogue_controller(cluster, victim, password="not-the-cluster-password")
    wait_until("the rogue controller's API", lambda: cluster.cluster_info(rogue), timeout=30)
    # Eight more slots take 8 s: ten election timeouts, and the rogue redials every 0.5 s.
    before = len(succeeded(base, job["id"]))
    wait_until(
        "more runs while the rogue is up",
        lambda: len(succeeded(base, job["id"])) >= before + 8,
        timeout=40,
    )

    info = cluster.cluster_info(rogue)
    assert info is not None
    assert info["node"]["role"] != "leader" and info["node"]["leading_epoch"] is None
    assert info["raft"]["leader"] is None and not info["raft"]["has_quorum"]
    assert not any(peer["connected"] for peer in info["peers"]), info["peers"]
    victim_address = cluster.raft_address(victim)
    for name in ("c1", "c2", "c3"):
        if name == victim:
            continue
        view = cluster.cluster_info(name)
        assert view is not None
        assert view["epoch"] == epoch and view["raft"]["term"] == epoch, name
        assert view["leader"]["node_id"] == leader
        assert [p["connected"] for p in view["peers"] if p["raft"] == victim_address] == [False]
    assert cluster.leader() == leader
    runs = all_runs(base, job["id"])
    assert {r["epoch"] for r in runs if r["epoch"] is not None} == {epoch}
    api("POST", base, f"/api/v1/jobs/{job['id']}/pause")


def test_a_worker_or_controller_with_the_wrong_grpc_secret_is_refused(
    make_cluster: Any,
) -> None:
    cluster: LocalCluster = make_cluster(workers=1)
    intruder = cluster.add_worker()
    cluster.nodes[intruder].env["CHRONORAFT_GRPC_SECRET"] = "not-the-cluster-secret"
    cluster.start(intruder)
    wait_until(
        "the intruder's heartbeats to be refused",
        lambda: "UNAUTHENTICATED" in cluster.nodes[intruder].log_path.read_text(),
        timeout=30,
    )
    base = cluster.url("c1")
    job = every_second_job(base)
    wait_until("runs on the real worker", lambda: len(succeeded(base, job["id"])) >= 4, 30)
    status, fleet = api("GET", base, "/api/v1/workers")
    assert status == 200 and [w["id"] for w in fleet["items"]] == ["w1"]
    assert {r["worker_id"] for r in all_runs(base, job["id"]) if r["worker_id"]} == {"w1"}
    assert any(
        "gRPC call refused: wrong chronoraft secret" in cluster.nodes[n].log_path.read_text()
        for n in cluster.controller_names
    )
    api("POST", base, f"/api/v1/jobs/{job['id']}/pause")

    # A controller with the wrong secret: its dispatch client is refused by the worker.
    worker_address = f"127.0.0.1:{cluster.worker_base}"
    request = pb.RunTaskRequest(
        run_id=999_999, attempt=1, epoch=10**9, command="echo pwned", use_shell=True
    )

    async def dispatch(secret: str) -> grpc.StatusCode:
        clients = WorkerClients(Settings(grpc_secret=secret))
        try:
            await clients.stub(worker_address).RunTask(request, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            await clients.close()
        return grpc.StatusCode.OK

    assert asyncio.run(dispatch("not-the-cluster-secret")) == grpc.StatusCode.UNAUTHENTICATED
    assert "999999" not in cluster.nodes["w1"].log_path.read_text()


def test_a_tls_cluster_runs_jobs_end_to_end_with_certificates_from_chronoraft_certs(
    make_cluster: Any, tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    made = subprocess.run(
        [sys.executable, "-m", "controller.cli", "certs", "--out", str(certs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    tls = {
        "CHRONORAFT_TLS_CERT": str(certs / "node.crt"),
        "CHRONORAFT_TLS_KEY": str(certs / "node.key"),
        "CHRONORAFT_TLS_CA": str(certs / "ca.crt"),
    }
    cluster: LocalCluster = make_cluster(workers=1, extra_env=tls)
    base = cluster.url("c1")
    job = every_second_job(base, command="echo over-tls")
    wait_until("runs over TLS", lambda: len(succeeded(base, job["id"])) >= 2, 30)
    status, run = api("GET", base, f"/api/v1/runs/{succeeded(base, job['id'])[0]['id']}")
    assert status == 200 and run["output"] == "over-tls\n"
    api("POST", base, f"/api/v1/jobs/{job['id']}/pause")

    async def heartbeat(security: GrpcSecurity) -> grpc.StatusCode:
        channel = security.channel(f"127.0.0.1:{cluster.grpc_base}")
        try:
            stub = pb_grpc.ControllerServiceStub(channel)
            await stub.Heartbeat(pb.HeartbeatRequest(worker_id="probe"), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            await channel.close()
        return grpc.StatusCode.OK

    plaintext = GrpcSecurity(secret=cluster.grpc_secret)
    assert asyncio.run(heartbeat(plaintext)) == grpc.StatusCode.UNAVAILABLE


def test_the_command_allowlist_refuses_other_commands_when_a_job_is_written(
    make_cluster: Any,
) -> None:
    policy = {"default": ["echo", "/usr/bin/*"]}
    cluster: LocalCluster = make_cluster(
        controllers=1,
        workers=1,
        extra_env={"CHRONORAFT_ALLOWED_COMMANDS": json.dumps(policy)},
    )
    base = cluster.url("c1")
    for body in (
        {"command": "rm -rf /tmp/nothing"},
        {"command": "echo hi; id"},
        {"command": "/bin/sh", "args": ["-c", "id"]},
    ):
        job_body = {**body, "name": unique("no"), "schedule": "0 3 * * *"}
        status, reply = api("POST", base, "/api/v1/jobs", job_body)
        assert status == 400 and reply["error"]["field"] == "command", reply
        assert "not allowed in namespace 'default'" in reply["error"]["message"]

    status, job = api(
        "POST",
        base,
        "/api/v1/jobs",
        {"name": unique("ok"), "schedule": "0 3 * * *", "command": "echo allowed"},
    )
    assert status == 201, job
    status, reply = api("PATCH", base, f"/api/v1/jobs/{job['id']}", {"command": "id"})
    assert status == 400 and reply["error"]["field"] == "command"
    status, run = api("POST", base, f"/api/v1/jobs/{job['id']}/trigger")
    assert status == 201
    wait_until(
        "the allowed command to run",
        lambda: api("GET", base, f"/api/v1/runs/{run['id']}")[1]["state"] == "succeeded",
        timeout=30,
    )
