"""/api/v1/runs: the searchable run history, one run per slot with its attempts."""

from __future__ import annotations

from aiohttp import web

from common.db import reading
from common.repo import runs as runs_repo
from common.states import RunState
from controller.api.params import choice_param, id_path, int_param, page, page_json, time_param
from controller.api.serialize import run_json
from controller.api.state import POOL

routes = web.RouteTableDef()
STATES = {s.value for s in RunState}


@routes.get("/api/v1/runs")
async def list_runs(request: web.Request) -> web.Response:
    limit, offset = page(request)
    job_id = int_param(request, "job_id", None, 1, 2**62)
    state = choice_param(request, "status", STATES) or choice_param(request, "state", STATES)
    since = time_param(request, "since")
    until = time_param(request, "until")
    async with reading(request.app[POOL]) as conn:
        rows, total, exact = await runs_repo.list_runs(
            conn,
            job_id=job_id,
            state=state,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
    return page_json([run_json(r) for r in rows], total, limit, offset, exact)


@routes.get("/api/v1/runs/{id}")
async def get_run(request: web.Request) -> web.Response:
    run_id = id_path(request)
    async with reading(request.app[POOL]) as conn:
        row = await runs_repo.get(conn, run_id)
    return web.json_response(run_json(row, full=True))


@routes.post("/api/v1/runs/{id}/cancel")
async def cancel_run(request: web.Request) -> web.Response:
    run_id = id_path(request)
    async with request.app[POOL].connection() as conn:
        outcome = await runs_repo.request_cancel(conn, run_id)
    return web.json_response(
        {"id": run_id, "state": outcome}, status=200 if outcome == "cancelled" else 202
    )
