"""One place that maps failures to HTTP: domain codes, outages, and the unexpected.

A client mistake is always a JSON 4xx naming the field; PostgreSQL being away is a 503 with
the reason; anything else is a 500 without a traceback (the traceback goes to the log).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import PoolTimeout

from common.dag import CycleError
from common.errors import DomainError, ValidationError
from controller.api.state import SETTINGS

log = logging.getLogger(__name__)

STATUS_BY_CODE = {
    "invalid_field": 400,
    "not_found": 404,
    "conflict": 409,
    "invalid_transition": 409,
    "cycle": 409,
}


def error_response(
    status: int, code: str, message: str, field: str | None = None, **extra: Any
) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, **extra}}
    if field:
        body["error"]["field"] = field
    return web.json_response(body, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return error_response(STATUS_BY_CODE.get(exc.code, 400), exc.code, exc.message, exc.field)
    except CycleError as exc:  # the whole cycle, spelled and as a list, so the client sees it
        return error_response(409, exc.code, exc.message, exc.field, cycle=exc.cycle)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_request_bytes
        return error_response(413, "body_too_large", f"body: larger than the {limit} byte limit")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return error_response(exc.status, code, exc.text or exc.reason)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        log.warning("database unavailable: %s", exc)
        return error_response(
            503, "database_unavailable", f"PostgreSQL is unavailable: {str(exc)[:200]}"
        )
    except psycopg.errors.DataError as exc:  # values PostgreSQL refuses (e.g. out of range)
        return error_response(400, "invalid_value", f"value rejected by the database: {exc}")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error (see the controller log)")


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a 400 naming what is wrong with it."""
    if request.content_type not in ("application/json", "", "application/octet-stream"):
        raise ValidationError("body: Content-Type must be application/json", field="body")
    raw = await request.read()
    if not raw.strip():
        raise ValidationError("body: a JSON object is required", field="body")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"body: malformed JSON: {exc}", field="body") from None
