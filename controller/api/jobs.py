"""/api/v1/jobs: cron job definitions. Writes go to PostgreSQL; the leader hears by NOTIFY."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from common import jobspec
from common.repo import jobs as jobs_repo
from common.repo import runs as runs_repo
from common.schedule import parse_schedule
from controller.api.errors import read_json
from controller.api.params import choice_param, page
from controller.api.serialize import job_json, run_json
from controller.api.state import POOL, SETTINGS

routes = web.RouteTableDef()


def _next_fire(cols: dict[str, Any], previous: dict[str, Any] | None) -> datetime | None:
    """Keep the persisted next slot unless the timing changed or the job was resumed."""
    if cols["paused"]:
        return None
    if (
        previous is not None
        and previous["next_fire_at"] is not None
        and not previous["paused"]
        and previous["schedule"] == cols["schedule"]
        and previous["timezone"] == cols["timezone"]
    ):
        return previous["next_fire_at"]
    now = datetime.now(UTC)
    return parse_schedule(cols["schedule"], cols["timezone"]).next_after(now)


@routes.post("/api/v1/jobs")
async def create_job(request: web.Request) -> web.Response:
    body = await read_json(request)
    settings = request.app[SETTINGS]
    cols = jobspec.validate_job(body, default_catchup=settings.default_catchup_window)
    cols["next_fire_at"] = _next_fire(cols, None)
    async with request.app[POOL].connection() as conn:
        row = await jobs_repo.create(conn, cols)
    return web.json_response(job_json(row), status=201)


@routes.get("/api/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    limit, offset = page(request)
    status = choice_param(request, "status", {"active", "paused"})
    query = request.query.get("q") or None
    async with request.app[POOL].connection() as conn:
        rows, total = await jobs_repo.list_jobs(
            conn, status=status, query=query, limit=limit, offset=offset
        )
    return web.json_response(
        {"items": [job_json(r) for r in rows], "total": total, "limit": limit, "offset": offset}
    )


@routes.get("/api/v1/jobs/{ref}")
async def get_job(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        row = await jobs_repo.get(conn, request.match_info["ref"])
    return web.json_response(job_json(row))


async def _write(request: web.Request, body: Any, *, merge: bool) -> web.Response:
    settings = request.app[SETTINGS]
    async with request.app[POOL].connection() as conn:
        async with conn.transaction():
            found = await jobs_repo.get(conn, request.match_info["ref"])
            current = await jobs_repo.lock(conn, found["id"])
            base = jobspec.to_api(current) if merge else None
            cols = jobspec.validate_job(
                body, base=base, default_catchup=settings.default_catchup_window
            )
            cols["next_fire_at"] = _next_fire(cols, current)
            row = await jobs_repo.update_locked(conn, current["id"], cols)
    return web.json_response(job_json(row))


@routes.put("/api/v1/jobs/{ref}")
async def replace_job(request: web.Request) -> web.Response:
    return await _write(request, await read_json(request), merge=False)


@routes.patch("/api/v1/jobs/{ref}")
async def patch_job(request: web.Request) -> web.Response:
    return await _write(request, await read_json(request), merge=True)


@routes.post("/api/v1/jobs/{ref}/pause")
async def pause_job(request: web.Request) -> web.Response:
    return await _write(request, {"paused": True}, merge=True)


@routes.post("/api/v1/jobs/{ref}/resume")
async def resume_job(request: web.Request) -> web.Response:
    return await _write(request, {"paused": False}, merge=True)


@routes.delete("/api/v1/jobs/{ref}")
async def delete_job(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        job_id = await jobs_repo.delete(conn, request.match_info["ref"])
    return web.json_response({"deleted": job_id})


@routes.post("/api/v1/jobs/{ref}/trigger")
async def trigger_job(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        job = await jobs_repo.get(conn, request.match_info["ref"])
        run = await runs_repo.trigger_now(conn, job["id"])
    run["job_name"] = job["name"]
    return web.json_response(run_json(run), status=201)
