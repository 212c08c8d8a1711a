"""Appending a run to docs/benchmarks.md: a dated section, the machine, every table.

The file is a log: earlier sections (and the hand-written analysis around them) are never
rewritten, so a figure can always be traced to the run and machine that produced it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from bench.table import Table, render_markdown


def run_section(
    started_at: datetime, command: str, machine: dict[str, str], tables: list[Table]
) -> str:
    """The Markdown of one run (pure, so it is tested without touching the file)."""
    out = [
        f"## Run of {started_at.strftime('%Y-%m-%d %H:%M')} UTC: `{command}`",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()) + ".",
        "",
    ]
    for table in tables:
        out.append(render_markdown(table))
        out.append("")
    return "\n".join(out)


def append_run(
    path: Path, started_at: datetime, command: str, machine: dict[str, str], tables: list[Table]
) -> None:
    existing = path.read_text() if path.exists() else ""
    if not existing:
        separator = "# Benchmarks\n\n"
    elif existing.endswith("\n\n"):
        separator = ""
    else:
        separator = "\n" if existing.endswith("\n") else "\n\n"
    with path.open("a") as out:
        out.write(separator + run_section(started_at, command, machine, tables))
