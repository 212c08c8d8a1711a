"""Lists answer one page plus the total, which the queries return with every row.

Lists of definitions (jobs, DAGs, namespaces) count every match: there are at most some
hundred thousand. Lists of histories (runs, DAG runs, audit entries) grow for as long as
the cluster runs, so their queries count only up to :func:`count_to` matches, and the answer
says when there are more (``total_exact`` false): counting every match of an unfiltered run
list over 1,000,000 runs took 1.4 s on this machine, counting to 10,000 takes 5 ms.
"""

from __future__ import annotations

from typing import Any

HISTORY_COUNT_LIMIT = 10_000
"""A history list counts its matches up to this many (or up to the end of the page asked
for, if that lies further)."""


def split_total(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int | None]:
    """Strip ``total_count`` from every row; None when the page is empty (total unknown)."""
    total = int(rows[0]["total_count"]) if rows else None
    for row in rows:
        row.pop("total_count", None)
    return rows, total


def count_to(limit: int, offset: int) -> int:
    """How many matches a history query counts: one more than it reports, to see if there
    are more."""
    return max(HISTORY_COUNT_LIMIT, offset + limit) + 1


def split_counted_total(
    rows: list[dict[str, Any]], counted_to: int
) -> tuple[list[dict[str, Any]], int | None, bool]:
    """:func:`split_total` for a count stopped at ``counted_to``: (rows, total, exact), where
    an inexact total is a lower bound (more match than that)."""
    rows, total = split_total(rows)
    if total is not None and total >= counted_to:
        return rows, counted_to - 1, False
    return rows, total, True
