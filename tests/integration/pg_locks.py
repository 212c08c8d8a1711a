"""Waiting, in a test, until a transaction is blocked on a row lock another one holds."""

from __future__ import annotations

import asyncio

import psycopg


async def waiting_for_a_lock(url: str, pid: int | None = None) -> None:
    """Until backend ``pid`` (any session of this database when None) waits for a lock;
    fails after 10 s."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND " + (
        "pid = %s" if pid is not None else "datname = current_database()"
    )
    params = (pid,) if pid is not None else ()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(500):
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
            if row and row[0]:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("no transaction ever waited for a row lock")
