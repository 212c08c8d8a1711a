"""Prune: move finished, deleted, unreferenced DAG-side rows to the *_history tables."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from common.db import q

# Order matters: edges and memberships leave with their DAG, which frees jobs, which free
# definition versions.
STEPS = (
    ("dependencies", "prune_dependencies"),
    ("dag_jobs", "prune_dag_jobs"),
    ("dags", "prune_dags"),
    ("jobs", "prune_jobs"),
    ("definitions", "prune_definitions"),
)


async def prune(conn: AsyncConnection[Any]) -> dict[str, int]:
    """One transaction; returns how many rows of each kind moved."""
    counts: dict[str, int] = {}
    async with conn.transaction():
        for name, query in STEPS:
            cur = await conn.execute(q(query))
            counts[name] = len(await cur.fetchall())
    return counts
