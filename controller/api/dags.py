"""/api/v1/dags: DAGs, the jobs placed in them and their dependency edges."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from common import defspec
from common.repo import dags as dags_repo
from controller.api.dag_serialize import dag_job_json, dag_json, edge_json
from controller.api.errors import read_json
from controller.api.params import bool_param, id_path, page, page_json
from controller.api.state import POOL

routes = web.RouteTableDef()


@routes.post("/api/v1/dags")
async def create_dag(request: web.Request) -> web.Response:
    cols = defspec.validate_dag(await read_json(request))
    async with request.app[POOL].connection() as conn:
        row = await dags_repo.create(conn, cols, datetime.now(UTC))
        full = await dags_repo.get(conn, int(row["id"]))
    return web.json_response(dag_json(full), status=201)


@routes.get("/api/v1/dags")
async def list_dags(request: web.Request) -> web.Response:
    limit, offset = page(request)
    namespace = request.query.get("namespace") or None
    if namespace is not None:
        defspec.namespace_name(namespace)
    async with request.app[POOL].connection() as conn:
        rows, total = await dags_repo.list_dags(
            conn,
            namespace=namespace,
            include_history=bool_param(request, "include_history"),
            limit=limit,
            offset=offset,
        )
    return page_json([dag_json(r) for r in rows], total, limit, offset)


@routes.get("/api/v1/dags/{id}")
async def get_dag(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        row = await dags_repo.get(conn, id_path(request))
    return web.json_response(dag_json(row))


@routes.delete("/api/v1/dags/{id}")
async def delete_dag(request: web.Request) -> web.Response:
    dag_id = id_path(request)
    async with request.app[POOL].connection() as conn:
        await dags_repo.delete(conn, dag_id)
    return web.json_response({"deleted": dag_id})


@routes.post("/api/v1/dags/{id}/jobs")
async def add_job(request: web.Request) -> web.Response:
    dag_id = id_path(request)
    placement = defspec.validate_job_placement(await read_json(request))
    async with request.app[POOL].connection() as conn:
        row = await dags_repo.add_job(conn, dag_id, placement)
    return web.json_response(dag_job_json(row), status=201)


@routes.get("/api/v1/dags/{id}/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    dag_id = id_path(request)
    async with request.app[POOL].connection() as conn:
        await dags_repo.get(conn, dag_id)  # 404 for an unknown DAG
        rows = await dags_repo.jobs_of(conn, dag_id)
    return web.json_response({"items": [dag_job_json(r) for r in rows], "total": len(rows)})


@routes.post("/api/v1/dags/{id}/dependencies")
async def add_dependency(request: web.Request) -> web.Response:
    dag_id = id_path(request)
    edge = defspec.validate_edge(await read_json(request))
    async with request.app[POOL].connection() as conn:
        rows = await dags_repo.add_edges(conn, dag_id, [edge])
    return web.json_response(edge_json(rows[0]), status=201)


@routes.post("/api/v1/dags/{id}/dependencies/bulk")
async def add_dependencies(request: web.Request) -> web.Response:
    """All edges or none: one cycle anywhere refuses the whole request (409)."""
    dag_id = id_path(request)
    edges = defspec.validate_edges_bulk(await read_json(request))
    async with request.app[POOL].connection() as conn:
        rows = await dags_repo.add_edges(conn, dag_id, edges)
    return web.json_response(
        {"items": [edge_json(r) for r in rows], "total": len(rows)}, status=201
    )


@routes.get("/api/v1/dags/{id}/dependencies")
async def list_dependencies(request: web.Request) -> web.Response:
    dag_id = id_path(request)
    async with request.app[POOL].connection() as conn:
        await dags_repo.get(conn, dag_id)
        rows = await dags_repo.edges_of(
            conn, dag_id, include_history=bool_param(request, "include_history")
        )
    return web.json_response({"items": [edge_json(r) for r in rows], "total": len(rows)})
