"""DAG-side rows to JSON (namespaces, definitions, DAGs, DAG jobs, edges, DAG runs)."""

from __future__ import annotations

from typing import Any

from common.jobspec import masked
from controller.api.serialize import iso


def namespace_json(row: dict[str, Any]) -> dict[str, Any]:
    doc = {
        "name": row["name"],
        "description": row["description"],
        "created_at": iso(row["created_at"]),
    }
    for key in ("definitions", "dags", "jobs"):
        if key in row:
            doc.setdefault("counts", {})[key] = int(row[key])
    return doc


def definition_json(row: dict[str, Any]) -> dict[str, Any]:
    doc = {
        "id": row["id"],
        "namespace": row["namespace"],
        "name": row["name"],
        "version": row["version"],
        "kind": row["kind"],
        "description": row["description"],
        "command": row["command"],
        "args": row["args"],
        "env": row["env"],
        "secret_env": row.get("secret_env") or {},
        "cwd": row["cwd"],
        "http": row["http"],
        "timeout_seconds": row["timeout_seconds"],
        "max_retries": row["max_retries"],
        "retry_backoff_seconds": row["retry_backoff_seconds"],
        "delay_interval_seconds": row["delay_interval_seconds"],
        "cron_spec": row["cron_spec"],
        "timezone": row["timezone"],
        "labels": row["labels"],
        "deleted": row["deleted_at"] is not None,
        "pruned": bool(row.get("pruned", False)),
        "created_at": iso(row["created_at"]),
        "deleted_at": iso(row["deleted_at"]),
    }
    if "scheduled_job_id" in row:
        doc["scheduled_job_id"] = row["scheduled_job_id"]
    return masked(doc)  # secret values never leave as they are stored


def dag_job_json(row: dict[str, Any]) -> dict[str, Any]:
    return masked(
        {
            "id": row["id"],
            "name": row["name"],
            "namespace": row["namespace"],
            "role": row["role"],
            "kind": row["kind"],
            "definition_id": row["definition_id"],
            "definition_version": row.get("definition_version"),
            "dag_ids": list(row.get("dag_ids") or []),
            "priority": row["priority"],
            "payload": row["payload"],
            "command": row["command"],
            "args": row["args"],
            "env": row["env"],
            "secret_env": row.get("secret_env") or {},
            "http": row["http"],
            "timeout_seconds": row["timeout_seconds"],
            "max_retries": row["max_retries"],
            "retry_backoff_seconds": row["retry_backoff_seconds"],
            "delay_interval_seconds": row["delay_interval_seconds"],
            "deleted": row["deleted_at"] is not None,
            "created_at": iso(row["created_at"]),
        }
    )


def edge_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "dag_id": row["dag_id"],
        "parent_job_id": row["parent_job_id"],
        "parent_name": row["parent_name"],
        "child_job_id": row["child_job_id"],
        "child_name": row["child_name"],
        "dependency_type": row["dependency_type"],
        "pruned": bool(row.get("pruned", False)),
        "created_at": iso(row["created_at"]),
    }


def _latest(run: dict[str, Any] | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run["id"],
        "state": run["state"],
        "created_at": iso(run["created_at"]),
        "finished_at": iso(run["finished_at"]),
    }


def dag_json(row: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": row["id"],
        "namespace": row["namespace"],
        "name": row["name"],
        "version": row["version"],
        "description": row["description"],
        "schedule": row["schedule"],
        "timezone": row["timezone"],
        "paused": row["paused"],
        "next_run_at": iso(row["next_fire_at"]),
        "one_shot": row["one_shot"],
        "pruned": bool(row.get("pruned", False)),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "deleted_at": iso(row["deleted_at"]),
    }
    if "latest_run_id" in row:
        doc["latest_run"] = _latest(
            {
                "id": row["latest_run_id"],
                "state": row["latest_run_state"],
                "created_at": row["latest_run_created_at"],
                "finished_at": row["latest_run_finished_at"],
            }
            if row["latest_run_id"] is not None
            else None
        )
    if "latest_run" in row:
        doc["latest_run"] = _latest(row["latest_run"])
    if "jobs" in row:
        doc["jobs"] = [dag_job_json(j) for j in row["jobs"]]
    if "dependencies" in row:
        doc["dependencies"] = [edge_json(e) for e in row["dependencies"]]
    return doc


NODE_FIELDS = (
    "job_id", "name", "run_id", "state", "attempt", "max_retries", "parents", "exit_code",
    "output", "output_truncated", "error", "worker_id", "idempotency_key", "reused_run_id",
    "cancel_requested", "delay_interval_seconds", "kind",
)  # fmt: skip
NODE_TIMES = ("not_before", "dispatched_at", "started_at", "finished_at")


def dag_run_json(row: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": row["id"],
        "dag_id": row["dag_id"],
        "dag_name": row.get("dag_name"),
        "dag_version": row["dag_version"],
        "namespace": row["namespace"],
        "state": row["state"],
        "trigger": row["trigger"],
        "idempotency_key": row["idempotency_key"],
        "error": row["error"],
        "scheduled_for": iso(row["scheduled_for"]),
        "created_at": iso(row["created_at"]),
        "finished_at": iso(row["finished_at"]),
    }
    if "nodes" in row:
        doc["nodes"] = [
            {**{k: n.get(k) for k in NODE_FIELDS}, **{k: iso(n.get(k)) for k in NODE_TIMES}}
            for n in row["nodes"]
        ]
        doc["edges"] = [
            {"parent_job_id": p, "child_job_id": c, "dependency_type": k}
            for p, c, k in row["edges"]
        ]
        counts: dict[str, int] = {}
        for node in row["nodes"]:
            counts[node["state"]] = counts.get(node["state"], 0) + 1
        doc["node_states"] = counts
    return doc
