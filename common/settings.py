"""Settings: one frozen dataclass read from ``CHRONORAFT_*`` environment variables.

Every process (controller, worker, CLI) builds one ``Settings`` at start and passes it down
explicitly; nothing reads the environment after that, so tests can run several nodes in one
interpreter with different settings.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

ENV_PREFIX = "CHRONORAFT_"


class SettingsError(ValueError):
    """A ``CHRONORAFT_*`` variable has a value we cannot use."""


def _split_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_labels(raw: str) -> dict[str, str]:
    """``"region=eu,gpu=yes"`` -> ``{"region": "eu", "gpu": "yes"}``."""
    labels: dict[str, str] = {}
    for item in _split_list(raw):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"label {item!r} must look like key=value")
        labels[key.strip()] = value.strip()
    return labels


@dataclass(frozen=True)
class Settings:
    """Configuration of one chronoraft process. Field docs are the README's config table."""

    # --- shared ---
    database_url: str = ""
    """PostgreSQL URL (psycopg conninfo). Required by controllers."""
    log_level: str = "INFO"
    log_format: str = "text"
    """``text`` (key=value) or ``json``."""
    data_dir: str = "./.chronoraft"
    """Where a node keeps local state (Raft journal, worker result spool)."""

    # --- controller ---
    node_id: str = "c1"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 9090
    """Port of the ControllerService (worker heartbeats and results)."""
    raft_self: str = "127.0.0.1:7000"
    raft_bind: str = ""
    """host:port the Raft server listens on when peers reach this node at another address
    (NAT, a container port mapping, a proxy). Peers still dial and recognise the node by
    ``raft_self``. Empty: listen on raft_self's port (PySyncObj binds all interfaces then)."""
    raft_peers: tuple[str, ...] = ()
    """The other controllers' Raft addresses (host:port), not including this node."""
    raft_password: str = field(default="", repr=False)
    raft_min_timeout: float = 0.4
    raft_max_timeout: float = 0.5
    raft_election_stagger: float = 0.2
    raft_append_entries_period: float = 0.08
    raft_leader_fallback_timeout: float = 1.2
    raft_connection_timeout: float = 86400.0
    """Idle time after which PySyncObj drops a Raft link (see controller/raft.py for why long)."""
    tick_interval: float = 0.1
    """Longest the leader sleeps between looks at its heap (it wakes earlier for due slots)."""
    default_catchup_window: float = 60.0
    worker_lease: float = 6.0
    """A worker with no heartbeat for this long is dead; its runs are re-queued."""
    dispatch_ack_timeout: float = 10.0
    """A run dispatched but never confirmed by its worker for this long is re-queued."""
    max_request_bytes: int = 1_048_576
    max_running: int = 0
    """Cluster-wide cap on runs dispatched or running at once (0 = no cap)."""
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    """REST API bearer tokens, each ``name:role:secret`` (role ``read`` or ``admin``)."""
    api_tokens_file: str = ""
    """File of hashed tokens, lines ``name role sha256:<hex>`` (``#`` comments allowed)."""
    protect_ops_endpoints: bool = False
    """Require a read token on /healthz, /readyz and /metrics too (open by default so probes
    and Prometheus need no secret)."""
    allowed_commands: str = ""
    """JSON object namespace -> list of glob patterns a job's executable (or its shell
    command's first word) must match; ``*`` as namespace applies to every other one.
    Empty: every command is allowed."""

    # --- worker ---
    worker_id: str = ""
    worker_host: str = "127.0.0.1"
    worker_port: int = 50051
    worker_advertise: str = ""
    """Address the leader should dial (defaults to worker_host:worker_port)."""
    worker_http_port: int = 0
    """Port of the worker's /healthz and /metrics endpoint (0 = not served)."""
    worker_concurrency: int = 4
    worker_labels: Mapping[str, str] = field(default_factory=dict)
    controllers: tuple[str, ...] = ("127.0.0.1:9090",)
    """ControllerService addresses a worker heartbeats and reports to."""
    heartbeat_interval: float = 1.0
    output_limit_bytes: int = 65_536
    drain_timeout: float = 30.0
    worker_allowed_commands: tuple[str, ...] = ()
    """Glob patterns on argv[0] (or a shell command's first word) this worker runs; anything
    else is refused with reason ``not_allowed``. Empty: everything."""

    # --- command-line client (chronoraft jobs|runs|dags|cluster|status) ---
    url: tuple[str, ...] = ()
    """Controller base URLs, tried in order until one answers (empty: 127.0.0.1:8080-8082)."""
    token: str = field(default="", repr=False)
    """API token the client sends as ``Authorization: Bearer <token>``."""

    # --- both: cluster traffic ---
    grpc_secret: str = field(default="", repr=False)
    """Shared secret every controller<->worker gRPC call carries in its metadata."""
    tls_cert: str = ""
    """PEM certificate of this node for gRPC (server and client side); with tls_key."""
    tls_key: str = ""
    tls_ca: str = ""
    """PEM CA that signed the peers' certificates; set together with tls_cert it turns on
    mutual TLS (peers must present a certificate signed by it)."""
    insecure_dev: bool = False
    """Allow starting without API tokens, Raft password and gRPC secret (local development
    only; the API is then open and every node logs a warning)."""

    @property
    def worker_address(self) -> str:
        if self.worker_advertise:
            return self.worker_advertise
        host = self.worker_host
        if host in ("", "0.0.0.0", "::"):  # listening everywhere: dial us by our hostname
            host = socket.gethostname()
        return f"{host}:{self.worker_port}"

    @property
    def effective_worker_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}-{self.worker_port}"

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields replaced (used by CLI flags, which win over env)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        return cls(**values)  # type: ignore[arg-type]


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is an error, so a
    typo never silently turns a safety switch off (or on)."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("must be one of 1/true/yes/on or 0/false/no/off")


def _convert(name: str, type_name: object, raw: str) -> object:
    env_name = ENV_PREFIX + name.upper()
    type_str = str(type_name)
    try:
        if type_str == "bool":
            return parse_bool(raw)
        if type_str == "int":
            return int(raw)
        if type_str == "float":
            return float(raw)
        if type_str.startswith("tuple"):
            return _split_list(raw)
        if type_str.startswith("Mapping"):
            return parse_labels(raw)
    except ValueError as exc:
        raise SettingsError(f"{env_name}={raw!r}: {exc}") from exc
    return raw


def env_var_names() -> list[str]:
    """Every variable name Settings understands (the README table is checked against it)."""
    return [ENV_PREFIX + f.name.upper() for f in fields(Settings)]
