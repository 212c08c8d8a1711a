"""DAGs, the jobs placed in them and the edges between those jobs.

Edges are checked for cycles inside the transaction that inserts them, under one advisory
lock for all edge writers: the DAG-local graph and the global graph across shared jobs are
both read after the lock, so two concurrent requests can never together close a cycle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from common import dag
from common.db import q
from common.defspec import EdgeRef, JobPlacement
from common.errors import Conflict, NotFound, ValidationError
from common.repo import definitions, namespaces
from common.repo.paging import split_total
from common.schedule import parse_schedule

EDGE_LOCK = "dependencies"


async def create(conn: AsyncConnection[Any], cols: dict[str, Any], now: datetime) -> dict[str, Any]:
    next_fire_at = (
        parse_schedule(cols["schedule"], cols["timezone"]).next_after(now)
        if cols["schedule"] and not cols["paused"]
        else None
    )
    params = {
        **cols,
        "catchup_window_seconds": 60.0,
        "next_fire_at": next_fire_at,
        "one_shot": False,
    }
    try:
        async with conn.transaction():
            await namespaces.require(conn, cols["namespace"])
            cur = await conn.execute(q("dag_insert"), params)
            row = await cur.fetchone()
            assert row is not None
            await conn.execute(q("dag_notify"), {"id": row["id"]})
    except psycopg.errors.UniqueViolation:
        raise Conflict(
            f"name: a DAG named {cols['name']!r} already exists in namespace {cols['namespace']!r}",
            field="name",
        ) from None
    return row


async def get(conn: AsyncConnection[Any], dag_id: int) -> dict[str, Any]:
    """A DAG (live, deleted or pruned) with its jobs, edges and latest run."""
    cur = await conn.execute(q("dag_get"), {"id": dag_id})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"DAG {dag_id} not found")
    row["jobs"] = await jobs_of(conn, dag_id)
    row["dependencies"] = await edges_of(conn, dag_id, include_history=bool(row["pruned"]))
    cur = await conn.execute(q("dag_latest_run"), {"id": dag_id})
    row["latest_run"] = await cur.fetchone()
    return row


async def lock(conn: AsyncConnection[Any], dag_id: int, *, shared: bool = False) -> dict[str, Any]:
    cur = await conn.execute(q("dag_lock_shared" if shared else "dag_lock"), {"id": dag_id})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"DAG {dag_id} not found (or deleted)")
    return row


async def list_dags(
    conn: AsyncConnection[Any],
    *,
    namespace: str | None,
    include_history: bool,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int | None]:
    cur = await conn.execute(
        q("dags_list"),
        {
            "namespace": namespace,
            "include_history": include_history,
            "limit": limit,
            "offset": offset,
        },
    )
    return split_total(await cur.fetchall())


async def delete(conn: AsyncConnection[Any], dag_id: int) -> None:
    """Soft-delete the DAG and those of its jobs that no other live DAG shares."""
    async with conn.transaction():
        cur = await conn.execute(q("dag_delete"), {"id": dag_id})
        if await cur.fetchone() is None:
            raise NotFound(f"DAG {dag_id} not found (or already deleted)")
        await conn.execute(q("dag_delete_unshared_jobs"), {"id": dag_id})
        await conn.execute(q("dag_notify"), {"id": dag_id})


# ----- jobs in a DAG -----


async def jobs_of(conn: AsyncConnection[Any], dag_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute(q("dag_jobs"), {"dag_id": dag_id})
    return await cur.fetchall()


async def get_job(conn: AsyncConnection[Any], job_id: int) -> dict[str, Any]:
    cur = await conn.execute(q("dag_job_get"), {"id": job_id})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"job {job_id} not found")
    return row


async def add_job(
    conn: AsyncConnection[Any], dag_id: int, placement: JobPlacement
) -> dict[str, Any]:
    """Place a definition version in the DAG (a new job), or share an existing DAG job."""
    async with conn.transaction():
        group = await lock(conn, dag_id)
        if placement.job_id is not None:
            job = await get_job(conn, placement.job_id)
            if job["role"] != "dag" or job["deleted_at"] is not None:
                raise ValidationError(
                    f"job_id: job {placement.job_id} is not a live DAG job", field="job_id"
                )
            if job["namespace"] != group["namespace"]:
                raise ValidationError(
                    f"job_id: job {placement.job_id} is in namespace {job['namespace']!r}, "
                    f"the DAG in {group['namespace']!r}",
                    field="job_id",
                )
            name = job["name"]
        else:
            if placement.definition_id is not None:
                definition = await definitions.get(conn, placement.definition_id)
                if definition["pruned"]:
                    raise ValidationError(
                        f"definition_id: definition {placement.definition_id} was pruned",
                        field="definition_id",
                    )
                if definition["namespace"] != group["namespace"]:
                    raise ValidationError(
                        f"definition_id: definition {definition['id']} is in namespace "
                        f"{definition['namespace']!r}, the DAG in {group['namespace']!r}",
                        field="definition_id",
                    )
            else:
                assert placement.definition is not None
                definition = await definitions.latest(
                    conn, group["namespace"], placement.definition
                )
            name = placement.name or definition["name"]
        cur = await conn.execute(q("dag_job_by_name"), {"dag_id": dag_id, "name": name})
        clash = await cur.fetchone()
        if clash is not None and clash["id"] != placement.job_id:
            raise Conflict(f"name: DAG {dag_id} already has a job named {name!r}", field="name")
        if placement.job_id is None:
            cur = await conn.execute(
                q("job_insert_from_definition"),
                {
                    "definition_id": definition["id"],
                    "name": name,
                    "role": "dag",
                    "catchup_window_seconds": 60.0,
                    "next_fire_at": None,
                    "priority": placement.priority,
                    "payload": Jsonb(placement.payload) if placement.payload is not None else None,
                },
            )
            created = await cur.fetchone()
            assert created is not None
            job_id = int(created["id"])
        else:
            job_id = placement.job_id
        await conn.execute(q("dag_job_attach"), {"dag_id": dag_id, "job_id": job_id})
        await conn.execute(q("dag_bump_version"), {"id": dag_id})
        return await get_job(conn, job_id)


# ----- edges -----


async def edges_of(
    conn: AsyncConnection[Any], dag_id: int, include_history: bool = False
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        q("dependencies_of_dag"), {"dag_id": dag_id, "include_history": include_history}
    )
    return await cur.fetchall()


def _resolve(
    ref: int | str, end: str, where: str, by_id: dict[int, str], by_name: dict[str, int]
) -> int:
    if isinstance(ref, int):
        if ref not in by_id:
            raise ValidationError(
                f"{where}{end}_job_id: job {ref} is not in this DAG", field=f"{where}{end}_job_id"
            )
        return ref
    if ref not in by_name:
        raise ValidationError(
            f"{where}{end}: no job named {ref!r} in this DAG", field=f"{where}{end}"
        )
    return by_name[ref]


async def add_edges(
    conn: AsyncConnection[Any], dag_id: int, refs: list[EdgeRef]
) -> list[dict[str, Any]]:
    """Insert edges (all or none); ``CycleError`` names the cycle they would close.

    Returns the DAG's edges that the request named (new or already there).
    """
    async with conn.transaction():
        await conn.execute(q("xact_lock"), {"key": EDGE_LOCK})
        await lock(conn, dag_id)
        members = await jobs_of(conn, dag_id)
        by_id = {int(j["id"]): j["name"] for j in members}
        by_name = {j["name"]: int(j["id"]) for j in members}
        new: list[dag.Edge] = []
        for ref in refs:
            parent = _resolve(ref.parent, "parent", ref.where, by_id, by_name)
            child = _resolve(ref.child, "child", ref.where, by_id, by_name)
            new.append(dag.Edge(str(parent), str(child), ref.kind))
        local = [
            (str(e["parent_job_id"]), str(e["child_job_id"])) for e in await edges_of(conn, dag_id)
        ]
        _check(local, new, by_id, "")
        cur = await conn.execute(q("dependencies_global"))
        everywhere = [
            (str(r["parent_job_id"]), str(r["child_job_id"])) for r in await cur.fetchall()
        ]
        _check(everywhere, new, by_id, " across DAGs sharing these jobs")
        inserted = 0
        for edge in new:
            cur = await conn.execute(
                q("dependency_insert"),
                {
                    "dag_id": dag_id,
                    "parent_job_id": int(edge.parent),
                    "child_job_id": int(edge.child),
                    "dependency_type": edge.kind.value,
                },
            )
            inserted += await cur.fetchone() is not None
        if inserted:
            await conn.execute(q("dag_bump_version"), {"id": dag_id})
        wanted = {(int(e.parent), int(e.child)) for e in new}
        return [
            e
            for e in await edges_of(conn, dag_id)
            if (e["parent_job_id"], e["child_job_id"]) in wanted
        ]


def _check(
    existing: list[tuple[str, str]], new: list[dag.Edge], names: dict[int, str], scope: str
) -> None:
    """Raise a CycleError spelled with job names (``name#id`` for jobs outside the DAG)."""
    try:
        dag.check_new_edges(existing, new)
    except dag.CycleError as exc:
        spelled = [names.get(int(node), f"job#{node}") for node in exc.cycle]
        error = dag.CycleError(spelled)
        error.message += scope
        error.args = (error.message,)
        raise error from None


# ----- leader side: scheduled DAGs -----


async def schedulable(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
    cur = await conn.execute(q("dags_schedulable"))
    return await cur.fetchall()


async def schedulable_one(conn: AsyncConnection[Any], dag_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(q("dag_schedulable"), {"id": dag_id})
    return await cur.fetchone()


async def advance(conn: AsyncConnection[Any], dag_id: int, old: datetime, new: datetime) -> bool:
    """Move a DAG's next slot on, unless it was edited meanwhile (then reload it)."""
    cur = await conn.execute(q("dags_advance"), {"id": dag_id, "old": old, "new": new})
    return await cur.fetchone() is not None
