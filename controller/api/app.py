"""The aiohttp application factory: one route table, typed state, error middleware."""

from __future__ import annotations

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from common.exec_policy import PolicyError, parse_policy
from common.settings import Settings, SettingsError
from controller.api import (
    admin,
    audit,
    cluster,
    dag_runs,
    dags,
    definitions,
    jobs,
    namespaces,
    openapi,
    runs,
)
from controller.api.auth import ApiAuth, auth_middleware
from controller.api.errors import error_middleware
from controller.api.state import CLUSTER, EXEC_POLICY, METRICS, POOL, SETTINGS, ClusterView
from controller.dashboard import routes as dashboard
from controller.metrics import ControllerMetrics


def create_app(
    settings: Settings,
    pool: AsyncConnectionPool,
    metrics: ControllerMetrics,
    cluster_view: ClusterView,
) -> web.Application:
    """Raises SettingsError when the token or allowlist configuration is unusable.

    Middlewares, outermost first: errors become JSON, then authentication decides, then
    successful writes are audited (so a refused or failed request is never audited).
    """
    try:
        policy = parse_policy(settings.allowed_commands)
    except PolicyError as exc:
        raise SettingsError(str(exc)) from None
    app = web.Application(
        middlewares=[
            error_middleware,
            auth_middleware(ApiAuth.from_settings(settings)),
            audit.audit_middleware,
        ],
        client_max_size=settings.max_request_bytes,
    )
    app[SETTINGS] = settings
    app[POOL] = pool
    app[METRICS] = metrics
    app[CLUSTER] = cluster_view
    app[EXEC_POLICY] = policy
    for table in (
        jobs.routes,
        runs.routes,
        namespaces.routes,
        definitions.routes,
        dags.routes,
        dag_runs.routes,
        admin.routes,
        cluster.routes,
        openapi.routes,
        dashboard.routes,
        audit.routes,
    ):
        app.add_routes(table)
    return app
