"""The audit trail: one row per successful API write (who, what, when), read by admins."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from common.db import q
from common.repo.paging import count_to, split_counted_total


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
) -> tuple[list[dict[str, Any]], int, bool]:
    """Newest first: (page, total, whether the total is exact); see common/repo/paging.py.
    An empty page past the first still gets its total, from a first page of one."""
    counted_to = count_to(limit, offset)
    params = {"actor": actor, "action": action, "since": since, "count_to": counted_to}
    cur = await conn.execute(q("audit_list"), params | {"limit": limit, "offset": offset})
    rows, total, exact = split_counted_total(await cur.fetchall(), counted_to)
    if total is None and offset:
        cur = await conn.execute(q("audit_list"), params | {"limit": 1, "offset": 0})
        _, total, exact = split_counted_total(await cur.fetchall(), counted_to)
    return rows, total or 0, exact
