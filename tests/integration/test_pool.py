"""The controller's connection pool: cheap checkout checks and autocommit reads.

Checkouts skip psycopg_pool's round-trip check unless the socket says something happened,
and reads run in autocommit; neither may hand out a dead connection or leave a connection
in autocommit for a writer that relies on its implicit transaction.
"""

from __future__ import annotations

import asyncio

import psycopg
from psycopg_pool import AsyncConnectionPool

from common import db


async def _backend_pids(pool: AsyncConnectionPool) -> set[int]:
    pids = set()
    conns = []
    for _ in range(pool.max_size):
        conn = await pool.getconn()
        conns.append(conn)
        pids.add(conn.info.backend_pid)
    for conn in conns:
        await pool.putconn(conn)
    return pids


def test_a_connection_the_server_ended_is_never_handed_out(database_url: str) -> None:
    async def scenario() -> None:
        pool = db.make_pool(database_url, min_size=2, max_size=2)
        await pool.open(wait=True)
        try:
            killed = await _backend_pids(pool)
            with psycopg.connect(database_url, autocommit=True) as admin:
                for pid in killed:
                    # waits until the backend is gone, so its socket is closed
                    admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
            for _ in range(4):
                async with pool.connection() as conn:
                    row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
                    assert row is not None and row["pid"] not in killed
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_reads_run_in_autocommit_and_writers_get_a_transactional_connection(
    database_url: str,
) -> None:
    async def scenario() -> None:
        pool = db.make_pool(database_url, min_size=1, max_size=1)
        await pool.open(wait=True)
        try:
            async with db.reading(pool) as conn:
                assert conn.autocommit
                await conn.execute("SELECT 1")
                assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            async with pool.connection() as conn:  # the same (only) connection
                assert not conn.autocommit
                await conn.execute("SELECT 1")
                assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        finally:
            await pool.close()

    asyncio.run(scenario())
