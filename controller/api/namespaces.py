"""/api/v1/namespaces: the folders of definitions, DAGs and jobs."""

from __future__ import annotations

from aiohttp import web

from common import defspec
from common.repo import namespaces as ns_repo
from controller.api.dag_serialize import namespace_json
from controller.api.errors import read_json
from controller.api.params import page, page_json
from controller.api.state import POOL

routes = web.RouteTableDef()


@routes.post("/api/v1/namespaces")
async def create_namespace(request: web.Request) -> web.Response:
    cols = defspec.validate_namespace(await read_json(request))
    async with request.app[POOL].connection() as conn:
        row = await ns_repo.create(conn, cols["name"], cols["description"])
    return web.json_response(namespace_json(row), status=201)


@routes.get("/api/v1/namespaces")
async def list_namespaces(request: web.Request) -> web.Response:
    limit, offset = page(request)
    async with request.app[POOL].connection() as conn:
        rows, total = await ns_repo.list_all(conn, limit, offset)
    return page_json([namespace_json(r) for r in rows], total, limit, offset)


def _name(request: web.Request) -> str:
    return defspec.namespace_name(request.match_info["ns"], "ns")


@routes.get("/api/v1/namespaces/{ns}")
async def get_namespace(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        row = await ns_repo.get(conn, _name(request))
    return web.json_response(namespace_json(row))


@routes.delete("/api/v1/namespaces/{ns}")
async def delete_namespace(request: web.Request) -> web.Response:
    name = _name(request)
    async with request.app[POOL].connection() as conn:
        await ns_repo.delete(conn, name)
    return web.json_response({"deleted": name})
