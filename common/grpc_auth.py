"""Who may talk gRPC between controllers and workers: a shared secret, and TLS when configured.

Both directions carry the secret in call metadata (controller -> worker RunTask/CancelTask,
worker -> controller Heartbeat/ReportResult(s)) and both servers check it in an interceptor
before any handler runs, whatever the method (no list of methods to keep current), so a
process without the secret can neither register as a worker, report fake results, nor make
a worker run anything. The comparison is of SHA-256 digests
with ``hmac.compare_digest`` (constant time).

Without TLS the secret crosses the network in clear text, which is enough against a
misconfigured or stray process but not against someone who can read the traffic; with
``CHRONORAFT_TLS_CERT``/``_KEY`` (and ``_CA`` for mutual TLS) every channel is encrypted and
both ends prove who they are. ``chronoraft certs`` makes a development CA and certificates.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from common.logging import ctx
from common.settings import Settings, SettingsError

log = logging.getLogger(__name__)

METADATA_KEY = "x-chronoraft-secret"
REFUSAL_LOG_INTERVAL = 10.0
"""A refused peer usually retries every second: one warning per this many seconds."""

Options = Sequence[tuple[str, Any]]


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class RequireSecret(grpc.aio.ServerInterceptor):
    """Answers UNAUTHENTICATED to any call without the right secret in its metadata."""

    def __init__(self, secret: str) -> None:
        self._digest = _digest(secret)
        self._deny = grpc.unary_unary_rpc_method_handler(self._abort)
        self.refused_total = 0
        self._refused = 0
        self._logged_at = 0.0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        presented = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == METADATA_KEY and isinstance(value, str):
                presented = value
        if hmac.compare_digest(_digest(presented), self._digest):
            return await continuation(handler_call_details)
        self._refused += 1
        self.refused_total += 1
        now = time.monotonic()
        if now - self._logged_at >= REFUSAL_LOG_INTERVAL:
            log.warning(
                "gRPC call refused: %s chronoraft secret",
                "wrong" if presented else "no",
                extra=ctx(method=handler_call_details.method, refused=self._refused),
            )
            self._logged_at = now
            self._refused = 0
        return self._deny

    @staticmethod
    async def _abort(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED, "wrong or missing chronoraft gRPC secret"
        )


class SendSecret(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the secret to the metadata of every unary call on a channel."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
        metadata.add(METADATA_KEY, self._secret)
        details = grpc.aio.ClientCallDetails(
            method=client_call_details.method,
            timeout=client_call_details.timeout,
            metadata=metadata,
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def _read(path: str, name: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"{name}={path!r}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class GrpcSecurity:
    """The secret and TLS material of one process, used for its server and its channels."""

    secret: str = ""
    cert: bytes | None = None
    key: bytes | None = None
    ca: bytes | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> GrpcSecurity:
        """Read the PEM files named by the settings (SettingsError when unusable)."""
        if bool(settings.tls_cert) != bool(settings.tls_key):
            raise SettingsError("CHRONORAFT_TLS_CERT and CHRONORAFT_TLS_KEY go together")
        if settings.tls_ca and not settings.tls_cert:
            raise SettingsError("CHRONORAFT_TLS_CA needs CHRONORAFT_TLS_CERT and _KEY too")
        return cls(
            secret=settings.grpc_secret,
            cert=_read(settings.tls_cert, "CHRONORAFT_TLS_CERT") if settings.tls_cert else None,
            key=_read(settings.tls_key, "CHRONORAFT_TLS_KEY") if settings.tls_key else None,
            ca=_read(settings.tls_ca, "CHRONORAFT_TLS_CA") if settings.tls_ca else None,
        )

    @property
    def tls(self) -> bool:
        return self.cert is not None

    def server(self, options: Options = ()) -> grpc.aio.Server:
        interceptors = [RequireSecret(self.secret)] if self.secret else []
        return grpc.aio.server(options=list(options), interceptors=interceptors)

    def add_port(self, server: grpc.aio.Server, address: str) -> int:
        """Listen on ``address``: TLS when a certificate is configured (client certificates
        signed by the CA are then required when a CA is configured), else plain TCP."""
        if self.cert is None or self.key is None:
            return server.add_insecure_port(address)
        credentials = grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=bool(self.ca)
        )
        return server.add_secure_port(address, credentials)

    def channel(self, address: str, options: Options = ()) -> grpc.aio.Channel:
        interceptors = [SendSecret(self.secret)] if self.secret else None
        if self.cert is None:
            return grpc.aio.insecure_channel(
                address, options=list(options), interceptors=interceptors
            )
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )
        return grpc.aio.secure_channel(
            address, credentials, options=list(options), interceptors=interceptors
        )
