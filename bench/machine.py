"""What the numbers were measured on: cores, memory, CPU model, Python, PostgreSQL, load.

A benchmark figure without its machine is not comparable with the next run, and on a shared
2-core box the load average at the start says whether the run was quiet.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import psycopg


def _cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware"):
            return value.strip()
    return platform.processor() or "unknown"


def _mem_total_gib(meminfo: str) -> float | None:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def postgres_version(url: str) -> str:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        return f"unknown ({exc.__class__.__name__})"
    return str(row[0]) if row else "unknown"


def machine_info(pg_url: str) -> dict[str, str]:
    """One flat dict, in the order it is printed."""
    mem = _mem_total_gib(_read("/proc/meminfo"))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(_read("/proc/cpuinfo")),
        "ram": f"{mem:.1f} GiB" if mem is not None else "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": postgres_version(pg_url),
        "load average at start": " ".join(f"{x:.2f}" for x in load),
    }


def describe(info: dict[str, str]) -> str:
    """``key: value; key: value`` for one line of text."""
    return "; ".join(f"{k}: {v}" for k, v in info.items())
