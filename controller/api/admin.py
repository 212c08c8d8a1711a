"""Administrative actions: prune to history, rebuild the leader's schedule heap."""

from __future__ import annotations

from aiohttp import web

from common.repo import prune as prune_repo
from common.repo import scheduler
from controller.api.state import CLUSTER, POOL

routes = web.RouteTableDef()


@routes.post("/api/v1/admin/prune")
async def prune(request: web.Request) -> web.Response:
    """Move deleted, finished, unreferenced DAG-side rows to *_history; counts per table."""
    async with request.app[POOL].connection() as conn:
        counts = await prune_repo.prune(conn)
    return web.json_response({"moved": counts, "total": sum(counts.values())})


@routes.post("/api/v1/scheduler/reload")
async def reload_scheduler(request: web.Request) -> web.Response:
    """The leader hears this by NOTIFY on whichever controller it arrives."""
    async with request.app[POOL].connection() as conn:
        await scheduler.request_reload(conn)
    raft = request.app[CLUSTER].node_info()["raft"]
    return web.json_response(
        {"requested": True, "raft_leader": raft["leader"], "term": raft["term"]}, status=202
    )
