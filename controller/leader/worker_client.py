"""gRPC channels to workers, one per address, reused across dispatches."""

from __future__ import annotations

import grpc

from proto import chronoraft_pb2_grpc as pb_grpc


class WorkerClients:
    def __init__(self) -> None:
        self._stubs: dict[str, tuple[grpc.aio.Channel, pb_grpc.WorkerServiceStub]] = {}

    def stub(self, address: str) -> pb_grpc.WorkerServiceStub:
        found = self._stubs.get(address)
        if found is None:
            channel = grpc.aio.insecure_channel(
                address,
                options=[
                    ("grpc.initial_reconnect_backoff_ms", 200),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                ],
            )
            found = (channel, pb_grpc.WorkerServiceStub(channel))
            self._stubs[address] = found
        return found[1]

    async def close(self) -> None:
        for channel, _ in self._stubs.values():
            await channel.close(grace=None)
        self._stubs.clear()
