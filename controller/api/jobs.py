"""/api/v1/jobs: cron job definitions. Writes go to PostgreSQL; the leader hears by NOTIFY."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from common import jobspec
from common.db import reading
from common.errors import Conflict, ValidationError
from common.repo import dags as dags_repo
from common.repo import jobs as jobs_repo
from common.repo import runs as runs_repo
from common.schedule import parse_schedule
from controller.api.dag_serialize import dag_job_json
from controller.api.errors import read_json
from controller.api.params import body_time, choice_param, page, page_json
from controller.api.serialize import job_json, run_json
from controller.api.state import EXEC_POLICY, POOL, SETTINGS

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
    cols = jobspec.validate_job(
        body, default_catchup=settings.default_catchup_window, policy=request.app[EXEC_POLICY]
    )
    cols["next_fire_at"] = _next_fire(cols, None)
    async with request.app[POOL].connection() as conn:
        row = await jobs_repo.create(conn, cols)
    return web.json_response(job_json(row), status=201)


@routes.get("/api/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    limit, offset = page(request)
    status = choice_param(request, "status", {"active", "paused"})
    query = request.query.get("q") or None
    async with reading(request.app[POOL]) as conn:
        rows, total = await jobs_repo.list_jobs(
            conn, status=status, query=query, limit=limit, offset=offset
        )
    return page_json([job_json(r) for r in rows], total, limit, offset)


@routes.get("/api/v1/jobs/{ref}")
async def get_job(request: web.Request) -> web.Response:
    """A cron job by id or name, or a DAG job by id (the two share one id space)."""
    async with reading(request.app[POOL]) as conn:
        row = await jobs_repo.get(conn, request.match_info["ref"])
        if row["role"] == "dag":
            return web.json_response(dag_job_json(await dags_repo.get_job(conn, row["id"])))
    return web.json_response(job_json(row))


async def _cron_job(conn: Any, ref: str) -> dict[str, Any]:
    """A cron job; a DAG job is changed through its definition and DAG instead (409)."""
    job = await jobs_repo.get(conn, ref)
    if job["role"] != "cron":
        raise Conflict(
            f"job {job['id']} belongs to a DAG: change its definition or DAG, not the job",
            field="id",
        )
    return job


async def _write(request: web.Request, body: Any, *, merge: bool) -> web.Response:
    settings = request.app[SETTINGS]
    async with request.app[POOL].connection() as conn:
        async with conn.transaction():
            found = await _cron_job(conn, request.match_info["ref"])
            current = await jobs_repo.lock(conn, found["id"])
            base = jobspec.to_api(current) if merge else None
            cols = jobspec.validate_job(
                body,
                base=base,
                default_catchup=settings.default_catchup_window,
                policy=request.app[EXEC_POLICY],
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
        job = await _cron_job(conn, request.match_info["ref"])
        job_id = await jobs_repo.delete(conn, str(job["id"]))
    return web.json_response({"deleted": job_id})


@routes.post("/api/v1/jobs/{ref}/trigger")
async def trigger_job(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        job = await _cron_job(conn, request.match_info["ref"])
        run = await runs_repo.trigger_now(conn, job["id"])
    run["job_name"] = job["name"]
    return web.json_response(run_json(run), status=201)


MAX_BACKFILL_SLOTS = 10_000


@routes.post("/api/v1/jobs/{ref}/backfill")
async def backfill_job(request: web.Request) -> web.Response:
    """Run every slot of ``[start, end]`` once; slots that already have a run are left alone."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationError("body: must be a JSON object", field="body")
    unknown = sorted(set(body) - {"start", "end", "rate"})
    if unknown:
        raise ValidationError(
            f"{unknown[0]}: unknown field (allowed: start, end, rate)", field=unknown[0]
        )
    start = body_time(body, "start")
    end = body_time(body, "end")
    now = datetime.now(UTC)
    if end <= start:
        raise ValidationError("end: must be after start", field="end")
    if end > now:
        raise ValidationError(
            "end: must not be in the future (backfill replays the past)", field="end"
        )
    rate = body.get("rate", 10)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1000:
        raise ValidationError(
            "rate: must be a number of runs per second in (0, 1000]", field="rate"
        )
    async with request.app[POOL].connection() as conn:
        job = await _cron_job(conn, request.match_info["ref"])
        schedule = parse_schedule(job["schedule"], job["timezone"])
        try:
            slots = schedule.slots_between(start, end, MAX_BACKFILL_SLOTS + 1)
        except ValueError as exc:  # outside the years a schedule can evaluate ("start: ...")
            where = str(exc).partition(":")[0]
            raise ValidationError(str(exc), field=where if where == "end" else "start") from None
        if len(slots) > MAX_BACKFILL_SLOTS:
            raise ValidationError(
                f"end: the range holds more than {MAX_BACKFILL_SLOTS} slots; split it",
                field="end",
            )
        created = await runs_repo.insert_backfill(conn, job["id"], slots, float(rate))
    return web.json_response(
        {
            "job_id": job["id"],
            "slots": len(slots),
            "created": created,
            "existing": len(slots) - created,
            "rate": rate,
        },
        status=202,
    )
