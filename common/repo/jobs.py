"""Cron jobs: definitions written by the API, schedule state advanced by the leader."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from common.db import q
from common.errors import Conflict, NotFound

JSON_COLUMNS = ("args", "env", "labels")


def _bind(cols: dict[str, Any]) -> dict[str, Any]:
    bound = dict(cols)
    for key in JSON_COLUMNS:
        if key in bound and bound[key] is not None:
            bound[key] = Jsonb(bound[key])
    return bound


async def _store_secret_env(
    conn: AsyncConnection[Any], row: dict[str, Any], cols: dict[str, Any]
) -> None:
    """Write ``secret_env`` in the caller's transaction, by its own statement (the column
    came with migration 0004; job_insert/job_update predate it)."""
    if "secret_env" in cols:
        await conn.execute(
            q("job_secret_env_set"), {"id": row["id"], "secret_env": Jsonb(cols["secret_env"])}
        )
        row["secret_env"] = cols["secret_env"]


def _duplicate(name: str) -> Conflict:
    return Conflict(f"name: a job named {name!r} already exists", field="name")


async def create(conn: AsyncConnection[Any], cols: dict[str, Any]) -> dict[str, Any]:
    """Insert a job and tell the leader (NOTIFY is delivered on commit)."""
    try:
        async with conn.transaction():
            cur = await conn.execute(q("job_insert"), _bind(cols))
            row = await cur.fetchone()
            assert row is not None
            await _store_secret_env(conn, row, cols)
            await conn.execute(q("job_notify"), {"id": row["id"]})
    except psycopg.errors.UniqueViolation:
        raise _duplicate(cols["name"]) from None
    return row


async def get(conn: AsyncConnection[Any], ref: str | int) -> dict[str, Any]:
    """A live job by numeric id or by name."""
    if isinstance(ref, int) or (str(ref).isascii() and str(ref).isdigit()):
        cur = await conn.execute(q("job_get"), {"id": int(ref)})
    else:
        cur = await conn.execute(q("job_get_by_name"), {"name": str(ref)})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"job {ref!r} not found")
    return row


async def lock(conn: AsyncConnection[Any], job_id: int) -> dict[str, Any]:
    """Inside a transaction: the job row, locked against concurrent edits."""
    cur = await conn.execute(q("job_lock"), {"id": job_id})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"job {job_id} not found")
    return row


async def update_locked(
    conn: AsyncConnection[Any], job_id: int, cols: dict[str, Any]
) -> dict[str, Any]:
    """Inside a transaction, after :func:`lock`: write every column and notify the leader."""
    try:
        async with conn.transaction():  # savepoint: a duplicate name leaves the outer tx usable
            cur = await conn.execute(q("job_update"), _bind({**cols, "id": job_id}))
    except psycopg.errors.UniqueViolation:
        raise _duplicate(cols["name"]) from None
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"job {job_id} not found")
    await _store_secret_env(conn, row, cols)
    await conn.execute(q("job_notify"), {"id": job_id})
    return row


async def delete(conn: AsyncConnection[Any], ref: str | int) -> int:
    """Soft-delete: the job stops firing, its run history stays."""
    async with conn.transaction():
        job = await get(conn, ref)
        cur = await conn.execute(q("job_delete"), {"id": job["id"]})
        if await cur.fetchone() is None:
            raise NotFound(f"job {ref!r} not found")
        await conn.execute(q("job_notify"), {"id": job["id"]})
    return int(job["id"])


async def list_jobs(
    conn: AsyncConnection[Any], *, status: str | None, query: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    cur = await conn.execute(
        q("job_list"), {"status": status, "q": query, "limit": limit, "offset": offset}
    )
    rows = await cur.fetchall()
    total = int(rows[0]["total_count"]) if rows else 0
    if not rows and offset:
        cur = await conn.execute(
            q("job_list"), {"status": status, "q": query, "limit": 1, "offset": 0}
        )
        first = await cur.fetchone()
        total = int(first["total_count"]) if first else 0
    for row in rows:
        row.pop("total_count", None)
    return rows, total


async def schedulable(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Every job the leader should keep in its heap (loaded once per leadership)."""
    cur = await conn.execute(q("jobs_schedulable"))
    return await cur.fetchall()


async def schedulable_one(conn: AsyncConnection[Any], job_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(q("job_schedulable"), {"id": job_id})
    return await cur.fetchone()


async def advance(
    conn: AsyncConnection[Any],
    ids: list[int],
    olds: list[datetime | None],
    news: list[datetime],
    missed: list[int],
) -> set[int]:
    """Move next_fire_at forward where it still equals what the leader read; returns ids moved.

    ``missed`` adds to each job's missed-slot counter. A job edited meanwhile keeps the API's
    value; the leader then reloads it from its NOTIFY.
    """
    if not ids:
        return set()
    cur = await conn.execute(
        q("jobs_advance"), {"ids": ids, "olds": olds, "news": news, "missed": missed}
    )
    return {int(row["id"]) for row in await cur.fetchall()}


class SkipCounts(NamedTuple):
    """What the dispatcher skipped of one job's pending runs in one batch."""

    overlap: int = 0
    """skipped by the overlap policy"""
    buffer_dropped: int = 0
    """dropped from an overlap buffer"""
    missed: int = 0
    """not started within the catch-up window (the starting deadline)"""


async def count_skips(conn: AsyncConnection[Any], counts: dict[int, SkipCounts]) -> None:
    """Add one batch's skips to each job's counters."""
    counts = {k: v for k, v in counts.items() if any(v)}
    if not counts:
        return
    await conn.execute(
        q("jobs_count_skips"),
        {
            "ids": list(counts),
            "skipped": [v.overlap for v in counts.values()],
            "dropped": [v.buffer_dropped for v in counts.values()],
            "missed": [v.missed for v in counts.values()],
        },
    )
