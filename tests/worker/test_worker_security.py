"""gRPC security over real gRPC: the shared secret both ways, mutual TLS, the worker allowlist."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from worker_testkit import (
    FakeController,
    eventually,
    run_request,
    running_worker,
    worker_settings,
)

from common.grpc_auth import GrpcSecurity, RequireSecret
from controller.certs import write_dev_certs
from proto import chronoraft_pb2 as pb
from proto import chronoraft_pb2_grpc as pb_grpc
from worker.controllers import ControllerPool, NoControllerError
from worker.metrics import WorkerMetrics
from worker.service import WorkerService
from worker.spool import Spool

SECRET = "worker-test-secret-0123"


@contextlib.asynccontextmanager
async def secured_worker(
    tmp_path: Path, security: GrpcSecurity, **settings: object
) -> AsyncIterator[tuple[WorkerService, Spool, str]]:
    """A WorkerService behind a gRPC server built like run_worker builds it."""
    config = worker_settings(tmp_path, ("127.0.0.1:1",), **settings)
    spool = Spool(config.data_dir, config.effective_worker_id)
    service = WorkerService(config, spool, WorkerMetrics(), kill_grace=0.5)
    server = security.server()
    pb_grpc.add_WorkerServiceServicer_to_server(service, server)
    port = security.add_port(server, "127.0.0.1:0")
    await server.start()
    try:
        yield service, spool, f"127.0.0.1:{port}"
    finally:
        service.cancel_all("test over")
        await service.wait_idle(5.0)
        await server.stop(None)
        spool.close()


@contextlib.asynccontextmanager
async def secured_controller() -> AsyncIterator[tuple[FakeController, RequireSecret]]:
    """A stand-in ControllerService that demands SECRET, and its interceptor (to count)."""
    fake = FakeController()
    guard = RequireSecret(SECRET)
    server = grpc.aio.server(interceptors=[guard])
    pb_grpc.add_ControllerServiceServicer_to_server(fake, server)
    fake.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield fake, guard
    finally:
        await server.stop(None)


async def run_task(channel: grpc.aio.Channel, run_id: int) -> pb.RunTaskReply:
    try:
        return await pb_grpc.WorkerServiceStub(channel).RunTask(
            run_request(run_id, "true"), timeout=5
        )
    finally:
        await channel.close()


async def test_a_controller_without_the_secret_cannot_make_the_worker_run_anything(tmp_path):
    async with secured_worker(tmp_path, GrpcSecurity(secret=SECRET)) as (service, spool, address):
        for run_id, channel in (
            (1, grpc.aio.insecure_channel(address)),
            (2, GrpcSecurity(secret="not-the-secret").channel(address)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await run_task(channel, run_id)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert service.running() == [] and spool.count() == 0

        reply = await run_task(GrpcSecurity(secret=SECRET).channel(address), 3)
        assert reply.accepted
        await eventually(lambda: spool.contains(3, 1), 5.0, "the authenticated run's result")
        assert not spool.contains(1, 1) and not spool.contains(2, 1)


async def test_a_worker_with_the_wrong_secret_never_registers(tmp_path):
    async with secured_controller() as (controller, guard):
        wrong = worker_settings(tmp_path / "a", (controller.address,), grpc_secret="wrong-one")
        async with running_worker(wrong) as worker:
            await eventually(lambda: guard.refused_total >= 10, 10.0, "ten refused heartbeats")
            assert not worker.task.done()
            assert controller.heartbeats == []

        right = worker_settings(tmp_path / "b", (controller.address,), grpc_secret=SECRET)
        async with running_worker(right):
            await eventually(lambda: controller.heartbeats, 5.0, "registration with the secret")

    async with secured_controller() as (controller, _guard):
        pool = ControllerPool([controller.address], GrpcSecurity(secret="wrong-one"))
        with pytest.raises(NoControllerError, match="UNAUTHENTICATED"):
            await pool.call(lambda stub: stub.Heartbeat(pb.HeartbeatRequest(), timeout=2))
        await pool.close()


async def test_batched_results_need_the_secret_like_every_other_call():
    """The interceptor guards every method of the service, ReportResults included."""
    batch = pb.ReportResultsRequest(results=[pb.ReportResultRequest(run_id=1, state="failed")])
    async with secured_controller() as (controller, guard):
        for security in (GrpcSecurity(), GrpcSecurity(secret="wrong-one")):
            channel = security.channel(controller.address)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.ControllerServiceStub(channel).ReportResults(batch, timeout=2)
            await channel.close()
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert controller.reports == [] and guard.refused_total == 2

        channel = GrpcSecurity(secret=SECRET).channel(controller.address)
        reply = await pb_grpc.ControllerServiceStub(channel).ReportResults(batch, timeout=2)
        await channel.close()
        assert [r.acknowledged for r in reply.replies] == [True]


async def test_mutual_tls_needs_a_certificate_from_the_ca(tmp_path):
    certs = tmp_path / "certs"
    write_dev_certs(certs)
    tls = GrpcSecurity(
        secret=SECRET,
        cert=(certs / "node.crt").read_bytes(),
        key=(certs / "node.key").read_bytes(),
        ca=(certs / "ca.crt").read_bytes(),
    )
    async with secured_worker(tmp_path, tls) as (_service, _spool, address):
        assert (await run_task(tls.channel(address), 1)).accepted

        plain = GrpcSecurity(secret=SECRET).channel(address)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await run_task(plain, 2)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

        no_client_cert = grpc.aio.secure_channel(
            address, grpc.ssl_channel_credentials(root_certificates=tls.ca)
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await run_task(no_client_cert, 3)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

        other = tmp_path / "other-ca"
        write_dev_certs(other)
        foreign = GrpcSecurity(
            secret=SECRET,
            cert=(other / "node.crt").read_bytes(),
            key=(other / "node.key").read_bytes(),
            ca=tls.ca,
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await run_task(foreign.channel(address), 4)


@pytest.mark.parametrize(
    ("command", "use_shell", "args", "allowed"),
    [
        ("echo hi", True, (), True),
        ("/usr/bin/env", False, ("true",), True),
        ("rm -rf /tmp/nothing-here", True, (), False),
        ("echo hi; id", True, (), False),
        ("/bin/sh", False, ("-c", "id"), False),
    ],
)
async def test_the_worker_allowlist_refuses_other_commands_as_not_allowed(
    tmp_path, command: str, use_shell: bool, args: tuple[str, ...], allowed: bool
):
    security = GrpcSecurity(secret=SECRET)
    async with secured_worker(
        tmp_path, security, worker_allowed_commands=("echo", "/usr/bin/*")
    ) as (service, spool, address):
        request = pb.RunTaskRequest(
            run_id=1, attempt=1, epoch=1, command=command, use_shell=use_shell, args=list(args)
        )
        channel = security.channel(address)
        try:
            reply = await pb_grpc.WorkerServiceStub(channel).RunTask(request, timeout=5)
        finally:
            await channel.close()
        if allowed:
            assert reply.accepted, reply
            await eventually(lambda: spool.contains(1, 1), 5.0, "the allowed run's result")
        else:
            assert (reply.accepted, reply.reason) == (False, "not_allowed")
            assert service.running() == [] and spool.count() == 0


async def test_every_heartbeat_tells_the_leader_the_worker_allowlist(tmp_path):
    """The leader places runs from these fields; an unrestricted worker says so explicitly."""
    controller = FakeController()
    await controller.start()
    try:
        strict = worker_settings(
            tmp_path / "strict", (controller.address,), worker_allowed_commands=("/bin/echo",)
        )
        async with running_worker(strict):
            await eventually(lambda: len(controller.heartbeats) >= 2, 5.0, "two heartbeats")
        assert controller.heartbeats
        for beat in controller.heartbeats:
            assert beat.restricted and list(beat.allowed_commands) == ["/bin/echo"]

        controller.heartbeats.clear()
        open_worker = worker_settings(tmp_path / "open", (controller.address,), worker_id="w-open")
        async with running_worker(open_worker):
            await eventually(lambda: controller.heartbeats, 5.0, "a heartbeat")
        assert all(
            not beat.restricted and not beat.allowed_commands for beat in controller.heartbeats
        )
    finally:
        await controller.stop()
