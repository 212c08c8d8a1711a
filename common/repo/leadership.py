"""The leadership row: who may write (epoch fencing) and the failover timeline."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from common.db import q
from common.errors import Fenced


async def claim(conn: AsyncConnection[Any], epoch: int, node_id: str) -> bool:
    """Take leadership for ``epoch`` unless an equal or newer epoch already holds it."""
    async with conn.transaction():
        cur = await conn.execute(q("leadership_claim"), {"epoch": epoch, "node_id": node_id})
        if await cur.fetchone() is None:
            return False
        await conn.execute(q("leadership_log_insert"), {"epoch": epoch, "node_id": node_id})
    return True


async def fence(conn: AsyncConnection[Any], epoch: int) -> None:
    """Inside a transaction: raise Fenced unless ``epoch`` is still the current one.

    ``FOR SHARE`` makes a newer leader's claim wait for this transaction, so once the claim
    commits no write of the old epoch can follow it.
    """
    cur = await conn.execute(q("leadership_fence"))
    row = await cur.fetchone()
    current = int(row["epoch"]) if row else -1
    if current != epoch:
        raise Fenced(epoch, current)


async def current(conn: AsyncConnection[Any]) -> dict[str, Any] | None:
    cur = await conn.execute(q("leadership_current"))
    return await cur.fetchone()


async def timeline(conn: AsyncConnection[Any], limit: int = 50) -> list[dict[str, Any]]:
    cur = await conn.execute(q("leadership_timeline"), {"limit": limit})
    return await cur.fetchall()
