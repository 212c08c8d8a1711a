"""The audit trail: one row per successful API write (who, what, when), read by admins."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from common.db import q


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    """The API token's name (``anonymous`` in insecure dev mode)."""
    role: str
    action: str
    """``<target type>.<verb>``, e.g. ``job.create``, ``job.pause``, ``run.cancel``."""
    method: str
    path: str
    target_type: str | None
    target_id: str | None
    status: int
    detail: dict[str, Any] = field(default_factory=dict)


async def record(conn: AsyncConnection[Any], entry: AuditEntry) -> int:
    params = asdict(entry)
    params["detail"] = Jsonb(entry.detail)
    cur = await conn.execute(q("audit_insert"), params)
    row = await cur.fetchone()
    assert row is not None
    return int(row["id"])


async def list_entries(
    conn: AsyncConnection[Any],
    *,
    actor: str | None,
    action: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Newest first, with the number of matches across all pages."""
    params = {"actor": actor, "action": action, "since": since, "limit": limit, "offset": offset}
    cur = await conn.execute(q("audit_list"), params)
    rows = await cur.fetchall()
    total = int(rows[0]["total_count"]) if rows else 0
    if not rows and offset:
        cur = await conn.execute(q("audit_list"), {**params, "limit": 1, "offset": 0})
        first = await cur.fetchone()
        total = int(first["total_count"]) if first else 0
    for row in rows:
        row.pop("total_count", None)
    return rows, total
