"""The worker's small HTTP endpoint: ``/healthz`` for liveness probes, ``/metrics`` for Prometheus.

Served only when ``worker_http_port > 0``; the worker's real interface is gRPC.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from common.settings import Settings
from worker.metrics import WorkerMetrics

SETTINGS_KEY = web.AppKey("settings", Settings)
METRICS_KEY = web.AppKey("metrics", WorkerMetrics)


async def healthz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    return web.json_response({"status": "ok", "worker_id": settings.effective_worker_id})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    # CONTENT_TYPE_LATEST carries a charset, which web.Response(content_type=...) refuses.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(settings: Settings, worker_metrics: WorkerMetrics) -> web.Application:
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = worker_metrics
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_http(settings: Settings, worker_metrics: WorkerMetrics) -> web.AppRunner:
    """Start serving on worker_host:worker_http_port; the caller owns ``runner.cleanup()``."""
    runner = web.AppRunner(create_app(settings, worker_metrics), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.worker_host, settings.worker_http_port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(
            exc.errno,
            f"cannot serve /metrics on {settings.worker_host}:{settings.worker_http_port}: "
            f"{exc.strerror or exc}",
        ) from exc
    return runner
