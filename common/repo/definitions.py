"""Definitions: immutable versions; an update is version N+1 and retires version N.

A definition with a ``cron_spec`` is also a cron job (role ``cron``) that the leader schedules
like any other; that job follows the newest version and keeps its next slot when the timing
did not change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from common.db import q
from common.defspec import same_version
from common.errors import Conflict, NotFound
from common.jobspec import keep_stored_secrets
from common.repo import namespaces
from common.repo.paging import split_total
from common.schedule import parse_schedule

JSON_COLUMNS = ("args", "env", "secret_env", "http", "labels")


def _bind(cols: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k in JSON_COLUMNS and v is not None else v for k, v in cols.items()}


def scheduled_job_name(namespace: str, name: str) -> str:
    """The cron job's name: plain in the default namespace, ``ns.name`` elsewhere."""
    return name if namespace == "default" else f"{namespace}.{name}"


async def upsert(
    conn: AsyncConnection[Any], cols: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], str]:
    """Create version 1, or version N+1 when the spec differs; call inside a transaction.

    Returns the current version and ``created``, ``updated`` or ``unchanged``. Concurrent
    upserts of one name queue on an advisory lock, so versions never collide.
    """
    await namespaces.require(conn, cols["namespace"])
    await conn.execute(q("xact_lock"), {"key": f"definition:{cols['namespace']}/{cols['name']}"})
    cur = await conn.execute(q("definition_live"), cols)
    live = await cur.fetchone()
    # "***" (how the API shows a secret) keeps the live version's value.
    cols = {
        **cols,
        "secret_env": keep_stored_secrets(
            cols.get("secret_env") or {}, live["secret_env"] if live else {}
        ),
    }
    if live is not None and same_version(live, cols):
        return live, "unchanged"
    if live is not None:
        await conn.execute(q("definition_retire"), {"id": live["id"]})
    cur = await conn.execute(q("definition_insert"), _bind(cols))
    row = await cur.fetchone()
    assert row is not None
    row["scheduled_job_id"] = await _sync_schedule(conn, row, now)
    return row, "created" if live is None else "updated"


async def _sync_schedule(
    conn: AsyncConnection[Any], row: dict[str, Any], now: datetime
) -> int | None:
    cur = await conn.execute(q("definition_scheduled_job"), row)
    job = await cur.fetchone()
    if row["cron_spec"] is None:
        if job is not None:
            await conn.execute(q("job_delete"), {"id": job["id"]})
            await conn.execute(q("job_notify"), {"id": job["id"]})
        return None
    next_fire_at = parse_schedule(row["cron_spec"], row["timezone"]).next_after(now)
    params = {"definition_id": row["id"], "next_fire_at": next_fire_at}
    try:
        if job is not None:
            cur = await conn.execute(q("job_apply_definition"), {**params, "job_id": job["id"]})
        else:
            name = scheduled_job_name(row["namespace"], row["name"])
            cur = await conn.execute(
                q("job_insert_from_definition"),
                {
                    **params,
                    "name": name,
                    "role": "cron",
                    "catchup_window_seconds": 60.0,
                    "priority": 0,
                    "payload": None,
                },
            )
    except psycopg.errors.UniqueViolation:
        raise Conflict(
            f"cron_spec: a cron job named {scheduled_job_name(row['namespace'], row['name'])!r} "
            "already exists; rename the definition or that job",
            field="cron_spec",
        ) from None
    scheduled = await cur.fetchone()
    assert scheduled is not None
    await conn.execute(q("job_notify"), {"id": scheduled["id"]})
    return int(scheduled["id"])


async def get(conn: AsyncConnection[Any], definition_id: int) -> dict[str, Any]:
    cur = await conn.execute(q("definition_get"), {"id": definition_id})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"definition {definition_id} not found")
    return row


async def latest(conn: AsyncConnection[Any], namespace: str, name: str) -> dict[str, Any]:
    cur = await conn.execute(q("definition_latest_in"), {"namespace": namespace, "name": name})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(
            f"definition: no live definition {name!r} in namespace {namespace!r}",
            field="definition",
        )
    return row


async def list_definitions(
    conn: AsyncConnection[Any],
    *,
    namespace: str | None,
    name: str | None,
    include_deleted: bool,
    include_history: bool,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int | None]:
    cur = await conn.execute(
        q("definitions_list"),
        {
            "namespace": namespace,
            "name": name,
            "include_deleted": include_deleted or include_history,
            "include_history": include_history,
            "limit": limit,
            "offset": offset,
        },
    )
    return split_total(await cur.fetchall())
