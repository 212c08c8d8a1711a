"""Failover across the controllers, shared by the heartbeat and the result reporter.

Any controller serves ControllerService (each writes PostgreSQL), so a worker talks to one and
moves to the next when it fails. It starts with the last one that answered, so in steady state
every call goes to a controller known to work instead of re-probing dead ones first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc

from common.grpc_auth import GrpcSecurity
from proto import chronoraft_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    # gRPC's reconnect backoff grows to 120 s by default, and while a channel sits in that
    # backoff every call fails at once without dialling: a controller that came back would go
    # unnoticed for minutes. Keep the backoff short; controllers are few and local.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
)


class NoControllerError(RuntimeError):
    """Every controller failed this call; ``errors`` says why, per address."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        detail = "; ".join(f"{addr}: {why}" for addr, why in errors.items()) or "none configured"
        super().__init__(f"no controller answered ({detail})")


class ControllerPool:
    """One lazily created channel per controller address, tried in failover order."""

    def __init__(self, addresses: Sequence[str], security: GrpcSecurity | None = None) -> None:
        if not addresses:
            raise ValueError("at least one controller address is required")
        self.addresses = tuple(addresses)
        self._security = security or GrpcSecurity()
        self._preferred = 0
        self._channels: dict[str, grpc.aio.Channel] = {}

    @property
    def preferred(self) -> str:
        """The controller that answered last (the first one tried next time)."""
        return self.addresses[self._preferred]

    def order(self) -> list[str]:
        """All addresses, starting from the one that worked last, then round the list."""
        n = len(self.addresses)
        return [self.addresses[(self._preferred + i) % n] for i in range(n)]

    def stub(self, address: str) -> pb_grpc.ControllerServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._security.channel(address, CHANNEL_OPTIONS)
            self._channels[address] = channel
        return pb_grpc.ControllerServiceStub(channel)

    async def call(
        self,
        fn: Callable[[pb_grpc.ControllerServiceStub], Awaitable[T]],
        accept: Callable[[T], bool] = lambda _reply: True,
    ) -> tuple[str, T]:
        """Run ``fn`` against each controller in turn until one succeeds and its reply passes
        ``accept``; returns (address, reply). A reply that fails ``accept`` (e.g. a controller
        that cannot reach PostgreSQL answers acknowledged=False) counts as that controller
        failing, so the next one gets a chance."""
        errors: dict[str, str] = {}
        for address in self.order():
            try:
                reply = await fn(self.stub(address))
            except grpc.aio.AioRpcError as exc:
                errors[address] = f"{exc.code().name}: {exc.details()}"
                continue
            if not accept(reply):
                errors[address] = "refused: " + (" ".join(str(reply).split()) or "empty reply")
                continue
            self._mark_good(address)
            return address, reply
        raise NoControllerError(errors)

    def _mark_good(self, address: str) -> None:
        index = self.addresses.index(address)
        if index != self._preferred:
            log.info("now talking to controller %s", address)
            self._preferred = index

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
