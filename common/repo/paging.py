"""Lists answer one page plus the total, which the queries return as a window count."""

from __future__ import annotations

from typing import Any


def split_total(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int | None]:
    """Strip ``total_count`` from every row; None when the page is empty (total unknown)."""
    total = int(rows[0]["total_count"]) if rows else None
    for row in rows:
        row.pop("total_count", None)
    return rows, total
