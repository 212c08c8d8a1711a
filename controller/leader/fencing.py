"""The fenced transaction every leader-loop write goes through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from common.repo import leadership


@asynccontextmanager
async def fenced(pool: AsyncConnectionPool, epoch: int) -> AsyncIterator[AsyncConnection[Any]]:
    """A transaction that first proves ``epoch`` is still current (else raises Fenced)."""
    async with pool.connection() as conn:
        async with conn.transaction():
            await leadership.fence(conn, epoch)
            yield conn
