"""Requests to the leader's scheduler that are not tied to one job."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from common.db import q


async def request_reload(conn: AsyncConnection[Any]) -> None:
    """Ask the leader to rebuild its schedule heaps from PostgreSQL (NOTIFY, no wait)."""
    await conn.execute(q("scheduler_reload_notify"))
