"""DAG runs: start one (by DAG or inline as a workflow), read it, and act on its nodes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common import defspec
from common.errors import ValidationError
from common.repo import dag_runs as runs_repo
from common.repo import dags as dags_repo
from controller.api.dag_serialize import dag_run_json
from controller.api.errors import read_json
from controller.api.params import choice_param, id_path, page, page_json
from controller.api.state import POOL

routes = web.RouteTableDef()

DAG_RUN_STATES = {"running", "succeeded", "failed", "cancelled", "skipped"}


async def _optional_json(request: web.Request) -> Any:
    """An empty body is allowed where every field is optional."""
    if not request.can_read_body or not (await request.read()).strip():
        return None
    return await read_json(request)


@routes.post("/api/v1/dags/{id}/runs")
async def start_run(request: web.Request) -> web.Response:
    """201 with the new run; 200 with the existing one when the idempotency key is known."""
    dag_id = id_path(request)
    key = defspec.validate_run_request(await _optional_json(request))
    async with request.app[POOL].connection() as conn:
        row, created = await runs_repo.start(conn, dag_id, key)
    return web.json_response(dag_run_json(row), status=201 if created else 200)


@routes.get("/api/v1/dags/{id}/runs")
async def list_runs(request: web.Request) -> web.Response:
    dag_id = id_path(request)
    limit, offset = page(request)
    state = choice_param(request, "state", DAG_RUN_STATES)
    async with request.app[POOL].connection() as conn:
        await dags_repo.get(conn, dag_id)
        rows, total, exact = await runs_repo.list_runs(conn, dag_id, state, limit, offset)
    return page_json([dag_run_json(r) for r in rows], total, limit, offset, exact)


@routes.get("/api/v1/dag-runs/{id}")
async def get_run(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        row = await runs_repo.get(conn, id_path(request))
    return web.json_response(dag_run_json(row))


@routes.post("/api/v1/dag-runs/{id}/cancel")
async def cancel_run(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        row = await runs_repo.cancel(conn, id_path(request))
    return web.json_response(dag_run_json(row))


@routes.post("/api/v1/workflows")
async def start_workflow(request: web.Request) -> web.Response:
    """A one-shot inline DAG, built and started in one transaction; returns its run."""
    workflow = defspec.validate_workflow(await read_json(request))
    async with request.app[POOL].connection() as conn:
        row, created = await runs_repo.start_workflow(conn, workflow)
    return web.json_response(dag_run_json(row), status=201 if created else 200)


async def _act(request: web.Request, action: str) -> web.Response:
    job_id = id_path(request)
    body = await _optional_json(request)
    dag_run_id = None
    if body is not None:
        if not isinstance(body, dict) or set(body) - {"dag_run_id"}:
            raise ValidationError("body: only dag_run_id may be given", field="body")
        dag_run_id = body.get("dag_run_id")
        if dag_run_id is not None and (
            isinstance(dag_run_id, bool) or not isinstance(dag_run_id, int) or dag_run_id < 1
        ):
            raise ValidationError("dag_run_id: must be a positive integer", field="dag_run_id")
    async with request.app[POOL].connection() as conn:
        result = await runs_repo.act_on_node(conn, job_id, action, dag_run_id)
        row = await runs_repo.get(conn, result.dag_run_id)
    return web.json_response(
        {
            "job_id": job_id,
            "dag_run_id": result.dag_run_id,
            "run_id": result.run_id,
            "action": action,
            "state": result.state,
            "dag_run": dag_run_json(row),
        }
    )


@routes.post("/api/v1/jobs/{id}/complete")
async def complete_job(request: web.Request) -> web.Response:
    return await _act(request, "complete")


@routes.post("/api/v1/jobs/{id}/fail")
async def fail_job(request: web.Request) -> web.Response:
    return await _act(request, "fail")


@routes.post("/api/v1/jobs/{id}/retry")
async def retry_job(request: web.Request) -> web.Response:
    return await _act(request, "retry")


@routes.post("/api/v1/jobs/{id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    return await _act(request, "cancel")
