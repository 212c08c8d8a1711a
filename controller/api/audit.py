"""The audit trail: every successful API write is recorded (who, what, when); admins read it.

Recording is a middleware rather than calls in each handler, so endpoints added later are
audited without anyone remembering to. What was changed is read from the matched route's
template: ``POST /api/v1/jobs/{ref}/pause`` is ``job.pause`` on the job ``{ref}``, ``POST
/api/v1/jobs`` is ``job.create`` with the new id taken from the response. The detail keeps
the path parameters and the *names* of the body's fields, never their values, so secrets
sent in a body (``secret_env``) never reach the audit table.

The row is written after the handler succeeded, in its own statement: if PostgreSQL fails in
between, the change stands (the client was told it happened) and the controller log keeps an
error line with the same facts instead.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from common.logging import ctx
from common.repo import audit as audit_repo
from controller.api.access import SAFE_METHODS
from controller.api.auth import IDENTITY, Identity
from controller.api.errors import Handler
from controller.api.params import page, page_json, str_param, time_param
from controller.api.serialize import iso
from controller.api.state import POOL

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

API_PREFIX = "/api/v1/"
METHOD_VERBS = {"POST": "create", "PUT": "replace", "PATCH": "update", "DELETE": "delete"}
MAX_FIELDS = 64
MAX_TEXT = 200
MAX_RESPONSE_PARSED = 1_048_576


def _is_param(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def _singular(collection: str) -> str:
    return collection[:-1] if len(collection) > 1 and collection.endswith("s") else collection


def describe_target(
    template: str, method: str, params: dict[str, str]
) -> tuple[str, str | None, str]:
    """(target type, target id or None, verb) of a write, from its route template.

    ``/api/v1/jobs/{ref}/pause`` -> ("job", params["ref"], "pause");
    ``/api/v1/jobs/{ref}`` with PATCH -> ("job", params["ref"], "update");
    ``/api/v1/jobs`` with POST -> ("job", None, "create") (the id comes from the response).
    """
    parts = [p for p in template.removeprefix(API_PREFIX).split("/") if p]
    verb = None
    if len(parts) >= 2 and not _is_param(parts[-1]) and _is_param(parts[-2]):
        verb = parts.pop()
    target_id = None
    if parts and _is_param(parts[-1]):
        target_id = params.get(parts.pop()[1:-1])
    collection = parts[-1] if parts else ""
    return _singular(collection), target_id, verb or METHOD_VERBS.get(method, method.lower())


async def _body_fields(request: web.Request) -> list[str] | None:
    """The names of a JSON object body's fields (the handler already read the body)."""
    if not request.body_exists:
        return None
    try:
        doc = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    return sorted(str(k)[:MAX_TEXT] for k in doc)[:MAX_FIELDS]


def _result_id(response: web.StreamResponse) -> Any:
    """``id`` (or ``name``) of the JSON object a handler answered with, if any."""
    body = getattr(response, "body", None)
    if response.content_type != "application/json" or not isinstance(body, bytes):
        return None
    if len(body) > MAX_RESPONSE_PARSED:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    found = doc.get("id", doc.get("name"))
    return found if isinstance(found, int | str) else None


async def entry_for(
    request: web.Request, response: web.StreamResponse, identity: Identity
) -> audit_repo.AuditEntry:
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else request.path
    params = {k: v[:MAX_TEXT] for k, v in request.match_info.items()}
    target_type, target_id, verb = describe_target(template, request.method, params)
    result_id = _result_id(response)
    detail: dict[str, Any] = {"params": params} if params else {}
    fields = await _body_fields(request)
    if fields:
        detail["fields"] = fields
    if result_id is not None:
        detail["result_id"] = result_id
    return audit_repo.AuditEntry(
        actor=identity.name,
        role=identity.role,
        action=f"{target_type}.{verb}",
        method=request.method,
        path=request.path[:2000],
        target_type=target_type or None,
        target_id=target_id if target_id is not None else _text(result_id),
        status=response.status,
        detail=detail,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    identity = request.get(IDENTITY)
    if identity is None or request.method in SAFE_METHODS or response.status >= 400:
        return response
    entry = await entry_for(request, response, identity)
    try:
        async with request.app[POOL].connection() as conn:
            await audit_repo.record(conn, entry)
    except Exception as exc:  # noqa: BLE001 - the write stands; the log keeps the record
        log.error(
            "audit record not written: %s",
            str(exc)[:200],
            extra=ctx(
                actor=entry.actor,
                action=entry.action,
                target=entry.target_id,
                path=entry.path,
                status=entry.status,
            ),
        )
    return response


def audit_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": iso(row["at"]),
        "actor": row["actor"],
        "role": row["role"],
        "action": row["action"],
        "method": row["method"],
        "path": row["path"],
        "target_type": row["target_type"],
        "target_id": row["target_id"],
        "status": row["status"],
        "detail": row["detail"],
    }


@routes.get("/api/v1/audit")
async def list_audit(request: web.Request) -> web.Response:
    """Newest first; admin only (see auth.ADMIN_READ_PREFIXES)."""
    limit, offset = page(request)
    actor = str_param(request, "actor", 64)
    action = str_param(request, "action", 100)
    since = time_param(request, "since")
    async with request.app[POOL].connection() as conn:
        rows, total, exact = await audit_repo.list_entries(
            conn, actor=actor, action=action, since=since, limit=limit, offset=offset
        )
    return page_json([audit_json(r) for r in rows], total, limit, offset, exact)
