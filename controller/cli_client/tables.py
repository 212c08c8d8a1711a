"""Plain-text tables and the few value formats the CLI prints (times, durations, states)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    numeric = []
    for i in range(len(headers)):
        given = [row[i] for row in cells if row[i] != "-"]
        numeric.append(bool(given) and all(_is_number(v) for v in given))
    lines = [_line(headers, widths, numeric), *(_line(row, widths, numeric) for row in cells)]
    return "\n".join(lines)


def _line(values: Sequence[str], widths: list[int], numeric: list[bool]) -> str:
    parts = [
        v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
    ]
    return "  ".join(parts).rstrip()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """``key: value`` lines with the keys aligned."""
    items = [(k, _cell(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in items)


def when(iso: str | None, now: datetime | None = None) -> str:
    """``2026-11-23 10:00:05Z (3s ago)``: UTC, so output is the same on every machine."""
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso)
    now = now or datetime.now(UTC)
    delta = (moment - now).total_seconds()
    rel = f"in {duration(delta)}" if delta >= 0 else f"{duration(-delta)} ago"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z ({rel})"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 90:
        return f"{seconds:.1f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.0f}d"


def labels(mapping: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in (mapping or {}).items())
