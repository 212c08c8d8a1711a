"""Typed application state shared by handlers (aiohttp ``AppKey``s)."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from common.exec_policy import ExecPolicy
from common.settings import Settings
from controller.metrics import ControllerMetrics


class ClusterView(Protocol):
    """What the API may know about Raft and leadership, without importing the leader loop."""

    def node_info(self) -> dict[str, Any]: ...

    def raft_known(self) -> bool: ...


SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", AsyncConnectionPool)
METRICS = web.AppKey("metrics", ControllerMetrics)
CLUSTER = web.AppKey("cluster", ClusterView)
EXEC_POLICY: web.AppKey[ExecPolicy | None] = web.AppKey("exec_policy")
"""The command allowlist (CHRONORAFT_ALLOWED_COMMANDS); None allows every command."""
