"""Validation of DAG-workflow requests: definitions, DAGs, DAG jobs, edges, inline workflows.

Pure (no I/O, no clock), like common/jobspec.py whose field rules it reuses, so a definition's
``command`` or ``env`` is held to exactly the limits of a cron job's. Every failure is a
``ValidationError`` naming the field, including its position in a list (``nodes[2].id``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from common import dag, jobspec
from common.errors import ValidationError
from common.jobspec import (
    ENV_KEY_RE,
    LABEL_RE,
    MAX_ARGS,
    MAX_BACKOFF,
    MAX_COMMAND,
    MAX_ENV,
    MAX_LABELS,
    MAX_RETRIES,
    MAX_TIMEOUT,
    MAX_VALUE,
    NAME_RE,
)
from common.schedule import ScheduleError, parse_schedule

KINDS = ("cmd", "http", "binary")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
MAX_HTTP_BODY = 65_536
MAX_PAYLOAD = 65_536
MAX_DELAY = 7 * 86400.0
MAX_BULK = 500
"""Definitions per bulk request."""
MAX_DAG_NODES = 500
"""Nodes of an inline workflow."""
MAX_EDGES = 2000
"""Edges per request (bulk dependencies, or all depends_on of a workflow)."""
MAX_PRIORITY = 1000
MAX_IDEMPOTENCY_KEY = 200
NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEFAULT_NAMESPACE = "default"


def _fail(field_name: str, message: str) -> ValidationError:
    return ValidationError(f"{field_name}: {message}", field=field_name)


def _object(body: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _fail(where, "must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        name = f"{where}.{unknown[0]}" if where != "body" else unknown[0]
        raise _fail(name, f"unknown field (allowed: {', '.join(sorted(allowed))})")
    return body


def _prefixed(exc: ValidationError, prefix: str) -> ValidationError:
    """Re-home a jobspec error under a list position, e.g. ``nodes[1].command``."""
    if not prefix:
        return exc
    inner = exc.field or "body"
    return ValidationError(f"{prefix}{exc.message}", field=f"{prefix}{inner}")


def namespace_name(value: Any, field_name: str = "namespace") -> str:
    if value is None:
        return DEFAULT_NAMESPACE
    if not isinstance(value, str) or not NAMESPACE_RE.fullmatch(value):
        raise _fail(
            field_name,
            "must be 1-63 lowercase letters, digits, '_' or '-', starting with a letter or digit",
        )
    return value


def object_name(value: Any, field_name: str) -> str:
    if value is None:
        raise _fail(field_name, "is required")
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or value.isdigit():
        raise _fail(
            field_name,
            "must start with a letter or digit, use only letters, digits, '.', '_' or '-', "
            "be at most 200 characters and not be all digits",
        )
    return value


def validate_namespace(body: Any) -> dict[str, Any]:
    body = _object(body, "body", {"name", "description"})
    if body.get("name") is None:
        raise _fail("name", "is required")
    description = body.get("description") or ""
    if not isinstance(description, str) or len(description) > 2000:
        raise _fail("description", "must be a string of at most 2000 characters")
    return {"name": namespace_name(body["name"], "name"), "description": description}


# ----- execution spec (shared by definitions and inline workflow nodes) -----


def _http_spec(value: Any, where: str) -> dict[str, Any]:
    body = _object(value, where, {"method", "url", "headers", "body", "expected_status"})
    method = body.get("method") or "GET"
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise _fail(f"{where}.method", f"must be one of {', '.join(HTTP_METHODS)}")
    url = body.get("url")
    if not isinstance(url, str) or not url:
        raise _fail(f"{where}.url", "is required (an http:// or https:// URL)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > MAX_VALUE:
        raise _fail(f"{where}.url", "must be an absolute http:// or https:// URL")
    headers = body.get("headers") or {}
    try:
        headers = jobspec._string_map(
            headers, f"{where}.headers", key_re=re.compile(r"^[A-Za-z0-9-]{1,128}$"), max_items=64
        )
    except ValidationError:
        raise
    request_body = body.get("body") or ""
    if not isinstance(request_body, str) or len(request_body) > MAX_HTTP_BODY:
        raise _fail(f"{where}.body", f"must be a string of at most {MAX_HTTP_BODY} characters")
    expected = body.get("expected_status", 0)
    if (
        isinstance(expected, bool)
        or not isinstance(expected, int)
        or not (expected == 0 or 100 <= expected <= 599)
    ):
        raise _fail(f"{where}.expected_status", "must be an HTTP status 100-599 (0: any 2xx)")
    return {
        "method": method.upper(),
        "url": url,
        "headers": headers,
        "body": request_body,
        "expected_status": expected,
    }


def _exec_spec(
    body: dict[str, Any],
    prefix: str,
    *,
    timeout_key: str,
    retries_key: str,
    stored_secrets: dict[str, str] | None,
) -> dict:
    """kind, command, args, env, secret_env, cwd, http, timeout, retries, backoff, delay ->
    columns. ``stored_secrets=None`` keeps ``***`` secret values for the caller to resolve."""
    kind = body.get("kind") or "cmd"
    if kind not in KINDS:
        raise _fail(f"{prefix}kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    cols: dict[str, Any] = {"kind": kind, "http": None, "command": "", "args": None}
    try:
        if kind == "http":
            if body.get("http") is None:
                raise _fail("http", "is required when kind is http")
            if body.get("command") or body.get("args"):
                raise _fail("command", "must be empty when kind is http (use http.url)")
            cols["http"] = _http_spec(body["http"], "http")
        else:
            if body.get("http") is not None:
                raise _fail("http", f"is only allowed when kind is http, not {kind}")
            if body.get("command") is None:
                raise _fail("command", "is required")
            cols["command"] = jobspec._string(
                body, "command", max_len=MAX_COMMAND, allow_empty=False
            )
            args = body.get("args")
            if kind == "binary" and args is None:
                args = []  # a binary always runs without a shell
            if args is not None:
                if not isinstance(args, list) or len(args) > MAX_ARGS:
                    raise _fail("args", f"must be a list of at most {MAX_ARGS} strings or null")
                for i, arg in enumerate(args):
                    if not isinstance(arg, str) or len(arg) > MAX_VALUE or "\x00" in arg:
                        raise _fail(f"args[{i}]", f"must be a string of at most {MAX_VALUE} chars")
            cols["args"] = args
        cols["env"] = jobspec._string_map(
            body.get("env") or {}, "env", key_re=ENV_KEY_RE, max_items=MAX_ENV
        )
        cols["secret_env"] = jobspec.secret_env(
            body.get("secret_env"), stored=stored_secrets, env=cols["env"]
        )
        cwd = body.get("cwd")
        if cwd is not None:
            cwd = jobspec._string(body, "cwd", max_len=4096)
            if not cwd.startswith("/"):
                raise _fail("cwd", "must be an absolute path")
        cols["cwd"] = cwd or None
        cols["timeout_seconds"] = (
            jobspec._duration(body, timeout_key, MAX_TIMEOUT)
            if body.get(timeout_key) is not None
            else 0.0
        )
        cols["max_retries"] = (
            jobspec._int(body, retries_key, 0, MAX_RETRIES)
            if body.get(retries_key) is not None
            else 0
        )
        cols["retry_backoff_seconds"] = (
            jobspec._duration(body, "retry_backoff", MAX_BACKOFF)
            if body.get("retry_backoff") is not None
            else 10.0
        )
        cols["delay_interval_seconds"] = (
            jobspec._duration(body, "delay_interval", MAX_DELAY)
            if body.get("delay_interval") is not None
            else 0.0
        )
    except ValidationError as exc:
        raise _prefixed(exc, prefix) from None
    return cols


# ----- definitions -----

DEFINITION_FIELDS = {
    "namespace", "name", "kind", "description", "command", "args", "env", "secret_env", "cwd",
    "http", "timeout", "max_retries", "retry_backoff", "delay_interval", "cron_spec",
    "timezone", "labels",
}  # fmt: skip
SPEC_COLUMNS = (
    "kind", "description", "command", "args", "env", "secret_env", "cwd", "http",
    "timeout_seconds", "max_retries", "retry_backoff_seconds", "delay_interval_seconds",
    "cron_spec", "timezone", "labels",
)  # fmt: skip
"""The columns that make a version: an upsert with all of them equal changes nothing."""


def validate_definition(body: Any, prefix: str = "") -> dict[str, Any]:
    """Columns of a definition version (without ``version``) from a client body."""
    if not isinstance(body, dict):
        raise _fail(prefix.rstrip(".") or "body", "must be a JSON object")
    unknown = sorted(set(body) - DEFINITION_FIELDS)
    if unknown:
        raise _fail(
            f"{prefix}{unknown[0]}",
            f"unknown field (allowed: {', '.join(sorted(DEFINITION_FIELDS))})",
        )
    cols: dict[str, Any] = {
        "namespace": namespace_name(body.get("namespace"), f"{prefix}namespace"),
        "name": object_name(body.get("name"), f"{prefix}name"),
    }
    # A new version may say "***" to keep a secret of the live one: resolved in the upsert.
    cols.update(
        _exec_spec(
            body, prefix, timeout_key="timeout", retries_key="max_retries", stored_secrets=None
        )
    )
    description = body.get("description") or ""
    if not isinstance(description, str) or len(description) > 2000:
        raise _fail(f"{prefix}description", "must be a string of at most 2000 characters")
    cols["description"] = description
    try:
        cols["labels"] = jobspec._string_map(
            body.get("labels") or {}, "labels", key_re=LABEL_RE, max_items=MAX_LABELS
        )
    except ValidationError as exc:
        raise _prefixed(exc, prefix) from None
    tz = body.get("timezone") or "UTC"
    cron_spec = body.get("cron_spec")
    if cron_spec is not None and (not isinstance(cron_spec, str) or not cron_spec.strip()):
        raise _fail(f"{prefix}cron_spec", "must be a cron expression or null")
    if not isinstance(tz, str):
        raise _fail(f"{prefix}timezone", "must be an IANA time zone name")
    try:
        parse_schedule(cron_spec.strip() if cron_spec else "@daily", tz)
    except ScheduleError as exc:
        where = "timezone" if str(exc).startswith("timezone") else "cron_spec"
        raise ValidationError(f"{prefix}{exc}", field=f"{prefix}{where}") from None
    cols["cron_spec"] = cron_spec.strip() if cron_spec else None
    cols["timezone"] = tz
    return cols


def same_version(stored: dict[str, Any], cols: dict[str, Any]) -> bool:
    return all(stored.get(c) == cols.get(c) for c in SPEC_COLUMNS)


def validate_bulk_definitions(body: Any) -> list[dict[str, Any]]:
    body = _object(body, "body", {"definitions"})
    items = body.get("definitions")
    if not isinstance(items, list) or not items:
        raise _fail("definitions", "must be a non-empty list of definitions")
    if len(items) > MAX_BULK:
        raise _fail("definitions", f"must have at most {MAX_BULK} items (the bulk limit)")
    cols = [validate_definition(item, f"definitions[{i}].") for i, item in enumerate(items)]
    seen: dict[tuple[str, str], int] = {}
    for i, c in enumerate(cols):
        key = (c["namespace"], c["name"])
        if key in seen:
            raise _fail(f"definitions[{i}].name", f"repeats definitions[{seen[key]}]")
        seen[key] = i
    return cols


# ----- DAGs, their jobs and edges -----


def validate_dag(body: Any) -> dict[str, Any]:
    body = _object(
        body, "body", {"namespace", "name", "description", "schedule", "timezone", "paused"}
    )
    cols: dict[str, Any] = {
        "namespace": namespace_name(body.get("namespace")),
        "name": object_name(body.get("name"), "name"),
    }
    description = body.get("description") or ""
    if not isinstance(description, str) or len(description) > 2000:
        raise _fail("description", "must be a string of at most 2000 characters")
    cols["description"] = description
    schedule = body.get("schedule")
    tz = body.get("timezone") or "UTC"
    if not isinstance(tz, str):
        raise _fail("timezone", "must be an IANA time zone name")
    if schedule is not None and (not isinstance(schedule, str) or not schedule.strip()):
        raise _fail("schedule", "must be a cron expression or null")
    try:
        parse_schedule(schedule.strip() if schedule else "@daily", tz)
    except ScheduleError as exc:
        where = "timezone" if str(exc).startswith("timezone") else "schedule"
        raise ValidationError(str(exc), field=where) from None
    paused = body.get("paused", False)
    if not isinstance(paused, bool):
        raise _fail("paused", "must be true or false")
    cols.update(schedule=schedule.strip() if schedule else None, timezone=tz, paused=paused)
    return cols


@dataclass(frozen=True)
class JobPlacement:
    """POST /dags/{id}/jobs: a definition version placed in the DAG, or a shared job."""

    job_id: int | None = None
    definition_id: int | None = None
    definition: str | None = None
    name: str | None = None
    priority: int = 0
    payload: Any = None


def validate_job_placement(body: Any) -> JobPlacement:
    body = _object(
        body, "body", {"job_id", "definition_id", "definition", "name", "priority", "payload"}
    )
    given = [k for k in ("job_id", "definition_id", "definition") if body.get(k) is not None]
    if len(given) != 1:
        raise _fail(
            "definition_id",
            "give exactly one of definition_id, definition (a name) or job_id (to share a job)",
        )
    for key in ("job_id", "definition_id"):
        value = body.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise _fail(key, "must be a positive integer")
    definition = body.get("definition")
    if definition is not None:
        object_name(definition, "definition")
    name = body.get("name")
    if name is not None:
        object_name(name, "name")
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > MAX_PRIORITY:
        raise _fail("priority", f"must be an integer between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    payload = body.get("payload")
    if payload is not None and len(json.dumps(payload)) > MAX_PAYLOAD:
        raise _fail("payload", f"must be at most {MAX_PAYLOAD} bytes of JSON")
    if body.get("job_id") is not None and (name is not None or payload is not None or priority):
        raise _fail("job_id", "a shared job keeps its own name, priority and payload")
    return JobPlacement(
        job_id=body.get("job_id"),
        definition_id=body.get("definition_id"),
        definition=definition,
        name=name,
        priority=priority,
        payload=payload,
    )


@dataclass(frozen=True)
class EdgeRef:
    """One requested edge; each end is a job id or a job name within the DAG."""

    parent: int | str
    child: int | str
    kind: dag.EdgeKind
    where: str


def _job_ref(body: dict[str, Any], key: str, where: str) -> int | str:
    by_id, by_name = body.get(f"{key}_job_id"), body.get(key)
    if (by_id is None) == (by_name is None):
        raise _fail(
            f"{where}{key}_job_id", f"give exactly one of {key}_job_id or {key} (a job name)"
        )
    if by_id is not None:
        if isinstance(by_id, bool) or not isinstance(by_id, int) or by_id < 1:
            raise _fail(f"{where}{key}_job_id", "must be a positive integer")
        return by_id
    return object_name(by_name, f"{where}{key}")


def validate_edge(body: Any, where: str = "") -> EdgeRef:
    body = _object(
        body,
        where.rstrip(".") or "body",
        {"parent_job_id", "child_job_id", "parent", "child", "dependency_type"},
    )
    parent = _job_ref(body, "parent", where)
    child = _job_ref(body, "child", where)
    try:
        kind = dag.parse_dependency_type(body.get("dependency_type") or "data")
    except ValueError as exc:
        raise _fail(f"{where}dependency_type", str(exc).split(": ", 1)[-1]) from None
    return EdgeRef(parent=parent, child=child, kind=kind, where=where)


def validate_edges_bulk(body: Any) -> list[EdgeRef]:
    body = _object(body, "body", {"dependencies"})
    items = body.get("dependencies")
    if not isinstance(items, list) or not items:
        raise _fail("dependencies", "must be a non-empty list of edges")
    if len(items) > MAX_EDGES:
        raise _fail("dependencies", f"must have at most {MAX_EDGES} edges (the per-request limit)")
    return [validate_edge(item, f"dependencies[{i}].") for i, item in enumerate(items)]


def validate_run_request(body: Any) -> str | None:
    """POST /dags/{id}/runs: an optional idempotency key."""
    if body is None:
        return None
    body = _object(body, "body", {"idempotency_key"})
    return idempotency_key(body.get("idempotency_key"), "idempotency_key")


def idempotency_key(value: Any, field_name: str) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_IDEMPOTENCY_KEY
        or "\x00" in value
    ):
        raise _fail(field_name, f"must be a string of 1-{MAX_IDEMPOTENCY_KEY} characters")
    return value


# ----- inline workflows -----

NODE_FIELDS = {
    "id", "kind", "command", "args", "env", "secret_env", "cwd", "http", "retries",
    "max_retries", "retry_backoff", "timeout_seconds", "timeout", "idempotency_key",
    "depends_on", "delay_interval", "dependency_type",
}  # fmt: skip


@dataclass(frozen=True)
class WorkflowNode:
    node_id: str
    spec: dict[str, Any]
    depends_on: tuple[str, ...]
    idempotency_key: str | None
    dependency_type: dag.EdgeKind


@dataclass(frozen=True)
class Workflow:
    namespace: str
    name: str | None
    idempotency_key: str | None
    nodes: tuple[WorkflowNode, ...]
    request_hash: str = field(default="")

    def edges(self) -> list[dag.Edge]:
        return [
            dag.Edge(parent, node.node_id, node.dependency_type)
            for node in self.nodes
            for parent in node.depends_on
        ]


def validate_workflow(body: Any) -> Workflow:
    """An inline DAG; raises ``CycleError`` (a 409) when depends_on closes a cycle."""
    body = _object(body, "body", {"namespace", "name", "idempotency_key", "nodes"})
    nodes = body.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise _fail("nodes", "must be a non-empty list of nodes")
    if len(nodes) > MAX_DAG_NODES:
        raise _fail("nodes", f"must have at most {MAX_DAG_NODES} nodes (the per-request limit)")
    parsed: list[WorkflowNode] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(nodes):
        where = f"nodes[{i}]."
        raw = _object(raw, f"nodes[{i}]", NODE_FIELDS)
        node_id = object_name(raw.get("id"), f"{where}id")
        if node_id in seen:
            raise _fail(f"{where}id", f"repeats nodes[{seen[node_id]}].id {node_id!r}")
        seen[node_id] = i
        if raw.get("retries") is not None and raw.get("max_retries") is not None:
            raise _fail(f"{where}retries", "give retries or max_retries, not both")
        if raw.get("timeout_seconds") is not None and raw.get("timeout") is not None:
            raise _fail(f"{where}timeout_seconds", "give timeout_seconds or timeout, not both")
        spec_body = dict(raw)
        retries_key = "retries" if raw.get("retries") is not None else "max_retries"
        timeout_key = "timeout_seconds" if raw.get("timeout_seconds") is not None else "timeout"
        spec = _exec_spec(
            spec_body, where, timeout_key=timeout_key, retries_key=retries_key, stored_secrets={}
        )
        depends_on = raw.get("depends_on") or []
        if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
            raise _fail(f"{where}depends_on", "must be a list of node ids")
        try:
            kind = dag.parse_dependency_type(raw.get("dependency_type") or "data")
        except ValueError as exc:
            raise _fail(f"{where}dependency_type", str(exc).split(": ", 1)[-1]) from None
        parsed.append(
            WorkflowNode(
                node_id=node_id,
                spec=spec,
                depends_on=tuple(dict.fromkeys(depends_on)),
                idempotency_key=idempotency_key(
                    raw.get("idempotency_key"), f"{where}idempotency_key"
                ),
                dependency_type=kind,
            )
        )
    edge_count = sum(len(n.depends_on) for n in parsed)
    if edge_count > MAX_EDGES:
        raise _fail("nodes", f"depends_on must add up to at most {MAX_EDGES} edges")
    for i, node in enumerate(parsed):
        for parent in node.depends_on:
            if parent not in seen:
                raise _fail(f"nodes[{i}].depends_on", f"names unknown node {parent!r}")
    workflow = Workflow(
        namespace=namespace_name(body.get("namespace")),
        name=object_name(body["name"], "name") if body.get("name") is not None else None,
        idempotency_key=idempotency_key(body.get("idempotency_key"), "idempotency_key"),
        nodes=tuple(parsed),
    )
    cycle = dag.find_cycle([n.node_id for n in parsed], workflow.edges())
    if cycle:
        raise dag.CycleError(cycle)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return Workflow(
        namespace=workflow.namespace,
        name=workflow.name,
        idempotency_key=workflow.idempotency_key,
        nodes=workflow.nodes,
        request_hash=digest,
    )
