"""Rows to JSON: RFC 3339 times with offsets, stable field names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from common import jobspec


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def job_json(row: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": row["id"], **jobspec.masked(jobspec.to_api(row))}
    doc.update(
        next_run_at=iso(row["next_fire_at"]) if not row["paused"] else None,
        version=row["version"],
        counters={
            "missed": row["missed_count"],
            "skipped_by_overlap": row["skipped_overlap_count"],
            "buffer_dropped": row["buffer_dropped_count"],
        },
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
    )
    if "last_run_id" in row:
        doc["last_run"] = (
            {
                "id": row["last_run_id"],
                "state": row["last_run_state"],
                "finished_at": iso(row["last_run_finished_at"]),
            }
            if row["last_run_id"] is not None
            else None
        )
    return doc


RUN_FIELDS = (
    "id",
    "job_id",
    "job_name",
    "trigger",
    "state",
    "late",
    "attempt",
    "max_retries",
    "worker_id",
    "epoch",
    "exit_code",
    "output_truncated",
    "error",
    "dag_run_id",
)
RUN_TIMES = ("scheduled_for", "created_at", "dispatched_at", "started_at", "finished_at")


def run_json(row: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {k: row.get(k) for k in RUN_FIELDS}
    doc.update({k: iso(row.get(k)) for k in RUN_TIMES})
    started, finished = row.get("started_at"), row.get("finished_at")
    doc["duration_seconds"] = (
        round((finished - started).total_seconds(), 3) if started and finished else None
    )
    if full:
        doc["output"] = row.get("output")
        doc["cancel_requested"] = row.get("cancel_requested")
        doc["attempts"] = [
            {
                "attempt": a["attempt"],
                "worker_id": a["worker_id"],
                "epoch": a["epoch"],
                "state": a["state"],
                "dispatched_at": iso(a["dispatched_at"]),
                "started_at": iso(a["started_at"]),
                "finished_at": iso(a["finished_at"]),
                "exit_code": a["exit_code"],
                "output": a["output"],
                "output_truncated": a["output_truncated"],
                "error": a["error"],
            }
            for a in row.get("attempts", [])
        ]
    return doc


def worker_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "address": row["address"],
        "labels": row["labels"],
        "capacity": row["capacity"],
        "running": row["running"],
        "version": row["version"],
        "draining": row["draining"],
        "allowed_commands": row.get("allowed_commands"),
        "alive": row.get("alive", True),
        "registered_at": iso(row["registered_at"]),
        "last_heartbeat": iso(row["last_heartbeat"]),
    }
