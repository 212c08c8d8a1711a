"""The worker fleet as PostgreSQL sees it: heartbeats in, live workers out."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from common.db import q
from common.repo import runs as runs_repo


async def heartbeat(
    conn: AsyncConnection[Any],
    *,
    worker_id: str,
    address: str,
    labels: dict[str, str],
    capacity: int,
    running: list[tuple[int, int]],
    version: str,
    draining: bool,
    allowed_commands: list[str] | None = None,
) -> bool:
    """Record a heartbeat; returns True when this registered a new worker.

    ``allowed_commands`` is the worker's command allowlist, None when it has none.

    Runs the worker says it is executing but that PostgreSQL still has as ``dispatched``
    move to ``running`` (the dispatch reply may have been lost with a leader).
    """
    async with conn.transaction():
        cur = await conn.execute(
            q("worker_heartbeat"),
            {
                "id": worker_id,
                "address": address,
                "labels": Jsonb(labels),
                "capacity": capacity,
                "running": len(running),
                "version": version,
                "draining": draining,
                "allowed_commands": (
                    Jsonb(list(allowed_commands)) if allowed_commands is not None else None
                ),
            },
        )
        row = await cur.fetchone()
        await runs_repo.mark_running(conn, [(r, a, None) for r, a in running], worker_id)
    return bool(row and row["registered"])


async def live(conn: AsyncConnection[Any], lease: float) -> list[dict[str, Any]]:
    cur = await conn.execute(q("workers_live"), {"lease": lease})
    return await cur.fetchall()


async def all_workers(conn: AsyncConnection[Any], lease: float) -> list[dict[str, Any]]:
    cur = await conn.execute(q("workers_all"), {"lease": lease})
    return await cur.fetchall()
