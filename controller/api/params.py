"""Query-string and path parsing with errors that name the parameter."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from common.errors import ValidationError


def int_param(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name}: must be an integer, got {raw!r}", field=name) from None
    if not lo <= value <= hi:
        raise ValidationError(f"{name}: must be between {lo} and {hi}", field=name)
    return value


def str_param(request: web.Request, name: str, max_len: int) -> str | None:
    """A free-text query parameter: at most ``max_len`` characters, no NUL (PostgreSQL text
    cannot hold one); empty means absent."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_len:
        raise ValidationError(f"{name}: must be at most {max_len} characters", field=name)
    if "\x00" in raw:
        raise ValidationError(f"{name}: must not contain NUL characters", field=name)
    return raw


def choice_param(request: web.Request, name: str, allowed: set[str]) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise ValidationError(
            f"{name}: must be one of {', '.join(sorted(allowed))}, got {raw!r}", field=name
        )
    return raw


def bool_param(request: web.Request, name: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no); absent means false."""
    raw = (request.query.get(name) or "").lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise ValidationError(f"{name}: must be true or false, got {raw!r}", field=name)


def time_param(request: web.Request, name: str) -> datetime | None:
    """RFC 3339 with an explicit offset (``2026-11-23T10:00:00Z``)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    return parse_time(raw, name)


def body_time(body: dict[str, object], name: str) -> datetime:
    """A required RFC 3339 time field of a JSON body."""
    raw = body.get(name)
    if not isinstance(raw, str) or not raw:
        raise ValidationError(
            f"{name}: required, an RFC 3339 time such as 2026-11-23T10:00:00Z", field=name
        )
    return parse_time(raw, name)


def parse_time(raw: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ValidationError(
            f"{name}: must be an RFC 3339 time such as 2026-11-23T10:00:00Z, got {raw!r}",
            field=name,
        ) from None
    if value.tzinfo is None:
        raise ValidationError(f"{name}: must include a UTC offset (e.g. Z or +01:00)", field=name)
    return value


def id_path(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ValidationError(f"{name}: must be a positive integer, got {raw!r}", field=name)
    return int(raw)


def page(request: web.Request) -> tuple[int, int]:
    limit = int_param(request, "limit", 100, 1, 1000)
    offset = int_param(request, "offset", 0, 0, 10_000_000)
    assert limit is not None and offset is not None
    return limit, offset


def page_json(
    items: list[dict[str, Any]],
    total: int | None,
    limit: int,
    offset: int,
    total_exact: bool = True,
) -> web.Response:
    """One page of a list: the items, the matches across all pages, and the page asked for.

    An empty first page means nothing matched (0); an empty later page cannot tell (null).
    ``total_exact`` is false when a history list stopped counting (common/repo/paging.py):
    then more than ``total`` match.
    """
    if total is None and offset == 0:
        total = 0
    return web.json_response(
        {
            "items": items,
            "total": total,
            "total_exact": total_exact,
            "limit": limit,
            "offset": offset,
        }
    )
