"""Namespaces: the folders that definitions, DAGs and jobs live in."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from common.db import q
from common.errors import Conflict, NotFound
from common.repo.paging import split_total


async def create(conn: AsyncConnection[Any], name: str, description: str) -> dict[str, Any]:
    cur = await conn.execute(q("namespace_insert"), {"name": name, "description": description})
    row = await cur.fetchone()
    if row is None:
        raise Conflict(f"name: namespace {name!r} already exists", field="name")
    return row


async def get(conn: AsyncConnection[Any], name: str) -> dict[str, Any]:
    cur = await conn.execute(q("namespace_get"), {"name": name})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"namespace {name!r} not found")
    return row


async def require(conn: AsyncConnection[Any], name: str, field: str = "namespace") -> None:
    """A 404 naming the field unless the namespace exists (checked inside the writer's tx)."""
    cur = await conn.execute(q("namespace_exists"), {"name": name})
    if await cur.fetchone() is None:
        raise NotFound(f"{field}: namespace {name!r} not found (create it first)", field=field)


async def list_all(
    conn: AsyncConnection[Any], limit: int, offset: int
) -> tuple[list[dict[str, Any]], int | None]:
    cur = await conn.execute(q("namespaces_list"), {"limit": limit, "offset": offset})
    return split_total(await cur.fetchall())


async def delete(conn: AsyncConnection[Any], name: str) -> None:
    if name == "default":
        raise Conflict("namespace 'default' cannot be deleted")
    async with conn.transaction():
        cur = await conn.execute(q("namespace_delete"), {"name": name})
        if await cur.fetchone() is not None:
            return
        found = await get(conn, name)  # 404 when it does not exist
    raise Conflict(
        f"namespace {name!r} still holds {found['definitions']} definitions, {found['dags']} DAGs "
        f"and {found['jobs']} jobs: delete them first"
    )
