"""/api/v1/definitions: immutable, versioned job definitions (cmd, http, binary)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from common import defspec
from common.errors import DomainError
from common.repo import definitions as defs_repo
from controller.api.dag_serialize import definition_json
from controller.api.errors import read_json
from controller.api.params import bool_param, id_path, page, page_json
from controller.api.state import POOL

routes = web.RouteTableDef()


@routes.post("/api/v1/definitions")
async def create_definition(request: web.Request) -> web.Response:
    """Version 1, or version N+1 of an existing name (201); an identical spec is a 200."""
    cols = defspec.validate_definition(await read_json(request))
    async with request.app[POOL].connection() as conn:
        async with conn.transaction():
            row, outcome = await defs_repo.upsert(conn, cols, datetime.now(UTC))
    return web.json_response(
        {**definition_json(row), "outcome": outcome}, status=200 if outcome == "unchanged" else 201
    )


@routes.post("/api/v1/definitions/bulk")
async def bulk_definitions(request: web.Request) -> web.Response:
    """Create or upsert many definitions in one transaction: all are written or none."""
    items = defspec.validate_bulk_definitions(await read_json(request))
    now = datetime.now(UTC)
    results = []
    async with request.app[POOL].connection() as conn:
        async with conn.transaction():
            for i, cols in enumerate(items):
                try:
                    results.append(await defs_repo.upsert(conn, cols, now))
                except DomainError as exc:  # point at the item; the transaction rolls back
                    exc.field = f"definitions[{i}].{exc.field or 'name'}"
                    exc.message = f"definitions[{i}].{exc.message}"
                    raise
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for _, outcome in results:
        counts[outcome] += 1
    return web.json_response(
        {"items": [{**definition_json(r), "outcome": o} for r, o in results], **counts}
    )


@routes.get("/api/v1/definitions")
async def list_definitions(request: web.Request) -> web.Response:
    limit, offset = page(request)
    namespace = request.query.get("namespace") or None
    if namespace is not None:
        defspec.namespace_name(namespace)
    name = request.query.get("name") or None
    if name is not None:
        defspec.object_name(name, "name")
    async with request.app[POOL].connection() as conn:
        rows, total = await defs_repo.list_definitions(
            conn,
            namespace=namespace,
            name=name,
            include_deleted=bool_param(request, "include_deleted"),
            include_history=bool_param(request, "include_history"),
            limit=limit,
            offset=offset,
        )
    return page_json([definition_json(r) for r in rows], total, limit, offset)


@routes.get("/api/v1/definitions/{id}")
async def get_definition(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        row = await defs_repo.get(conn, id_path(request))
    return web.json_response(definition_json(row))
