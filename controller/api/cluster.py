"""Cluster view, workers, and the operational endpoints (/healthz, /readyz, /metrics)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.db import reading
from common.repo import leadership
from common.repo import workers as workers_repo
from controller import scrape
from controller.api.serialize import iso, worker_json
from controller.api.state import CLUSTER, METRICS, POOL, SETTINGS

routes = web.RouteTableDef()


@routes.get("/api/v1/cluster")
async def cluster(request: web.Request) -> web.Response:
    """This node (id, role, pid, version) plus what PostgreSQL says about leader and fleet."""
    settings = request.app[SETTINGS]
    info = request.app[CLUSTER].node_info()
    async with reading(request.app[POOL]) as conn:
        current = await leadership.current(conn)
        fleet = await workers_repo.all_workers(conn, settings.worker_lease)
        history = await leadership.timeline(conn, 20)
    return web.json_response(
        {
            "node": info["node"],
            "raft": info["raft"],
            "leader": {
                "node_id": current["node_id"] if current else None,
                "epoch": current["epoch"] if current else None,
                "since": iso(current["since"]) if current else None,
            },
            "epoch": current["epoch"] if current else None,
            "peers": info["peers"],
            "workers": [worker_json(w) for w in fleet if w["alive"]],
            "workers_lost": [worker_json(w) for w in fleet if not w["alive"]],
            "leadership_history": [
                {"epoch": h["epoch"], "node_id": h["node_id"], "claimed_at": iso(h["claimed_at"])}
                for h in history
            ],
        }
    )


@routes.get("/api/v1/workers")
async def workers(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    async with request.app[POOL].connection() as conn:
        fleet = await workers_repo.all_workers(conn, settings.worker_lease)
    return web.json_response({"items": [worker_json(w) for w in fleet]})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. Says nothing about dependencies on purpose."""
    return web.json_response({"status": "ok", "node_id": request.app[SETTINGS].node_id})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: PostgreSQL answers and Raft has a known state."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2.0):
            async with request.app[POOL].connection() as conn:
                await conn.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"unavailable: {str(exc)[:200] or type(exc).__name__}"
    checks["raft"] = "ok" if request.app[CLUSTER].raft_known() else "no leader known"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """This process's metrics, plus runs and workers read from PostgreSQL right now."""
    settings = request.app[SETTINGS]
    await scrape.refresh(request.app[POOL], request.app[METRICS], settings.worker_lease)
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
