"""Result tables: one shape for stdout and for docs/benchmarks.md (pure, no I/O).

A benchmark returns :class:`Table` objects and never prints; the runner renders each table
as aligned text for the terminal and as Markdown for the record, so the two never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

Cell = str | int | float | None


def format_cell(value: Cell) -> str:
    """Numbers with as many digits as they deserve; missing values (None, NaN) as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "-"
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


@dataclass
class Table:
    """A titled table; ``notes`` are printed under it (how to read it, what was skipped)."""

    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))

    def note(self, text: str) -> None:
        self.notes.append(text)


def render_text(table: Table) -> str:
    """Aligned plain text: first column left-aligned, the rest right-aligned."""
    cells = [[format_cell(c) for c in row] for row in table.rows]
    widths = [len(c) for c in table.columns]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(values: list[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    out = [table.title, "=" * len(table.title), line(table.columns)]
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in cells)
    out.extend(f"  note: {n}" for n in table.notes)
    return "\n".join(out)


def render_markdown(table: Table) -> str:
    """A Markdown heading, a pipe table and the notes as a list."""
    out = [f"### {table.title}", ""]
    out.append("| " + " | ".join(table.columns) + " |")
    out.append("|" + "|".join("---" for _ in table.columns) + "|")
    for row in table.rows:
        out.append("| " + " | ".join(format_cell(c).replace("|", "\\|") for c in row) + " |")
    if table.notes:
        out.append("")
        out.extend(f"- {n}" for n in table.notes)
    return "\n".join(out)
