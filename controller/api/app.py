"""The aiohttp application factory: one route table, typed state, error middleware."""

from __future__ import annotations

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from common.settings import Settings
from controller.api import cluster, jobs, openapi, runs
from controller.api.errors import error_middleware
from controller.api.state import CLUSTER, METRICS, POOL, SETTINGS, ClusterView
from controller.metrics import ControllerMetrics


def create_app(
    settings: Settings,
    pool: AsyncConnectionPool,
    metrics: ControllerMetrics,
    cluster_view: ClusterView,
) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware], client_max_size=settings.max_request_bytes
    )
    app[SETTINGS] = settings
    app[POOL] = pool
    app[METRICS] = metrics
    app[CLUSTER] = cluster_view
    for table in (jobs.routes, runs.routes, cluster.routes, openapi.routes):
        app.add_routes(table)
    return app
