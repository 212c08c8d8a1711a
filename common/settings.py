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
    raft_password: str = ""
    raft_min_timeout: float = 0.4
    raft_max_timeout: float = 0.8
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


def _convert(name: str, type_name: object, raw: str) -> object:
    env_name = ENV_PREFIX + name.upper()
    type_str = str(type_name)
    try:
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
