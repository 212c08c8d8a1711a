"""gRPC channels to workers, one per address, reused across dispatches.

Every channel carries the cluster's gRPC secret (and uses TLS when configured): a worker
refuses RunTask and CancelTask from anyone without them.
"""

from __future__ import annotations

import grpc

from common.grpc_auth import GrpcSecurity
from common.settings import Settings
from proto import chronoraft_pb2_grpc as pb_grpc

CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class WorkerClients:
    def __init__(self, settings: Settings) -> None:
        self._security = GrpcSecurity.from_settings(settings)
        self._stubs: dict[str, tuple[grpc.aio.Channel, pb_grpc.WorkerServiceStub]] = {}

    def stub(self, address: str) -> pb_grpc.WorkerServiceStub:
        found = self._stubs.get(address)
        if found is None:
            channel = self._security.channel(address, CHANNEL_OPTIONS)
            found = (channel, pb_grpc.WorkerServiceStub(channel))
            self._stubs[address] = found
        return found[1]

    async def close(self) -> None:
        for channel, _ in self._stubs.values():
            await channel.close(grace=None)
        self._stubs.clear()
