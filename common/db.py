"""PostgreSQL access: connection pool, numbered migrations, named queries.

All SQL lives in ``common/sql/``: migrations are numbered files applied once each, queries
are ``-- name: x`` sections of the ``*.sql`` files there, loaded by name. Only ``common/repo`` uses
them; handlers and the leader loop call repository functions.
"""

from __future__ import annotations

import logging
import re
import select
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

T = TypeVar("T")

CONFLICT_ATTEMPTS = 3
"""Tries of a transaction PostgreSQL rolls back to settle a conflict (see :func:`transact`)."""

IDLE_IN_TX_MS = 3000

# Any fixed number works; it only has to be the same in every controller.
MIGRATION_LOCK_KEY = 0x6368726F6E6F


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached right now (the API answers 503)."""

    code = "database_unavailable"


@cache
def queries() -> dict[str, str]:
    """``-- name: foo`` sections of every ``common/sql/*.sql`` file, by name.

    One file per area (``queries.sql`` for cron jobs and runs, ``dags.sql`` for workflows);
    a name defined twice is an error rather than a silent override.
    """
    found: dict[str, str] = {}
    folder = resources.files("common.sql")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text()
        for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
            name, _, body = block.partition("\n")
            if name.strip() in found:
                raise RuntimeError(f"query {name.strip()!r} is defined twice ({entry.name})")
            found[name.strip()] = body.strip().rstrip(";")
    return found


def q(name: str) -> str:
    """One named query (KeyError at first use names a typo loudly)."""
    return queries()[name]


def _migration_files() -> list[tuple[int, str, str]]:
    folder = resources.files("common.sql").joinpath("migrations")
    result = []
    for entry in folder.iterdir():
        match = re.match(r"^(\d+)_.*\.sql$", entry.name)
        if match:
            result.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(result)


def migrate(url: str) -> list[str]:
    """Apply missing migrations under an advisory lock; returns the names applied.

    Three controllers starting together all call this: the lock makes them take turns, and
    the second and third find nothing left to do.
    """
    applied: list[str] = []
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in _migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)  # type: ignore[arg-type]  # trusted file, not input
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(name)
                log.info("migration applied: %s", name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied


def rolled_back(exc: BaseException) -> bool:
    """PostgreSQL rolled this transaction back to settle a conflict (a deadlock, a
    serialization failure): SQLSTATE class 40. Nothing was written and the server is up,
    so running the transaction again is the answer. Told by the SQLSTATE: psycopg's
    DeadlockDetected and SerializationFailure derive from OperationalError, not from its
    TransactionRollback class.
    """
    return isinstance(exc, psycopg.Error) and (exc.sqlstate or "").startswith("40")


async def transact(
    pool: AsyncConnectionPool,
    work: Callable[[AsyncConnection[Any]], Awaitable[T]],
    attempts: int = CONFLICT_ATTEMPTS,
) -> T:
    """``work`` in one transaction on a pooled connection, run again at once (up to
    ``attempts`` in all) when PostgreSQL rolls it back to settle a conflict: a deadlock
    with another statement locking some of the same rows, say. Left to the caller's
    caller (a worker resending its results), it would wait out a backoff and could lose
    the same race again. Any other error, or the last conflict, is raised.
    """
    for _ in range(attempts - 1):
        try:
            return await _in_transaction(pool, work)
        except Exception as exc:
            if not rolled_back(exc):
                raise
            log.info("transaction rolled back, running it again: %s", str(exc).splitlines()[0])
    return await _in_transaction(pool, work)


async def _in_transaction(
    pool: AsyncConnectionPool, work: Callable[[AsyncConnection[Any]], Awaitable[T]]
) -> T:
    async with pool.connection() as conn:
        async with conn.transaction():
            return await work(conn)


async def check_pooled(conn: AsyncConnection[Any]) -> None:
    """The pool's check of a connection it hands out, without a round trip when it can.

    psycopg_pool's own check sends an empty query on every checkout: a fifth of what a
    ``GET /jobs/{id}`` cost the controller (profiled). An idle connection's socket has
    nothing to read unless the server closed or ended the session (restart, idle timeout:
    an error message, then EOF) or sent a notice, so only a readable socket gets the full
    check. A peer that vanished without a word is not caught here; the query then fails
    like any query during an outage (503 in the API, a retry in the leader loop).
    """
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        await AsyncConnectionPool.check_connection(conn)


@asynccontextmanager
async def reading(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection for statements that only read, in autocommit.

    A pooled connection otherwise opens a transaction for the first statement and commits
    when it goes back: BEGIN and COMMIT are two more round trips than the SELECT itself
    (measured: 650 us against 190 us per checkout and query). Reads lose nothing by it: at
    READ COMMITTED every statement takes its own snapshot inside a transaction too. The
    pool's ``reset`` turns autocommit off again before anyone else gets the connection.
    """
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        yield conn


async def _reset_pooled(conn: AsyncConnection[Any]) -> None:
    """Every connection goes back to the pool in the mode writers rely on (transactional)."""
    if conn.autocommit:
        await conn.set_autocommit(False)


def make_pool(url: str, min_size: int = 2, max_size: int = 10) -> AsyncConnectionPool:
    """An unopened async pool; rows come back as dicts. Caller opens and closes it."""
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={
            "row_factory": dict_row,
            "connect_timeout": 5,
            "prepare_threshold": 5,
            # A controller frozen inside a transaction (SIGSTOP, VM pause, lost network)
            # holds its FOR SHARE lock on the leadership row and would block the next
            # leader's claim for as long as it is frozen: PostgreSQL ends such sessions,
            # and keepalives notice a peer that vanished. Fencing makes the abort safe.
            "options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TX_MS}",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        },
        timeout=3.0,  # an outage answers 503 after this, instead of hanging the client
        open=False,
        check=check_pooled,
        reset=_reset_pooled,
    )
