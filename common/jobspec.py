"""Validation of job definitions sent by clients. Pure: no I/O, no clock.

Turns a JSON object into database columns, or raises ValidationError naming the field.
The same rules serve POST (create), PUT (replace) and PATCH (merge over the stored job).
"""

from __future__ import annotations

import re
from typing import Any

from common.catchup import CatchupMode
from common.durations import DurationError, parse_duration
from common.errors import ValidationError
from common.exec_policy import ExecPolicy, check_command
from common.schedule import ScheduleError, parse_schedule
from common.states import parse_overlap

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
MAX_COMMAND = 8192
MAX_ARGS = 256
MAX_ENV = 128
MAX_LABELS = 32
MAX_VALUE = 8192
MAX_TIMEOUT = 7 * 86400.0
MAX_RETRIES = 100
MAX_BACKOFF = 86400.0
MAX_CATCHUP = 30 * 86400.0
MAX_CONCURRENCY = 1000
MAX_TIMEZONE = 64
SECRET_MASK = "***"
"""How a secret_env value is shown; sent back in a write it means "keep the stored value"."""

FIELDS = {
    "name",
    "description",
    "schedule",
    "timezone",
    "command",
    "args",
    "env",
    "secret_env",
    "cwd",
    "timeout",
    "max_retries",
    "retry_backoff",
    "labels",
    "paused",
    "catchup_window",
    "overlap",
    "catchup",
    "max_concurrency",
}
REQUIRED = ("name", "schedule", "command")


def _fail(field: str, message: str) -> ValidationError:
    return ValidationError(f"{field}: {message}", field=field)


def _string(body: dict[str, Any], field: str, *, max_len: int, allow_empty: bool = True) -> str:
    value = body[field]
    if not isinstance(value, str):
        raise _fail(field, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise _fail(field, "must not be empty")
    if len(value) > max_len:
        raise _fail(field, f"must be at most {max_len} characters")
    if "\x00" in value:
        raise _fail(field, "must not contain NUL characters")
    return value


def _string_map(
    value: Any, field: str, *, key_re: re.Pattern[str], max_items: int
) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(field, f"must be an object of strings, got {type(value).__name__}")
    if len(value) > max_items:
        raise _fail(field, f"must have at most {max_items} entries")
    for key, item in value.items():
        if not key_re.fullmatch(key):
            raise _fail(f"{field}.{key}", f"key {key!r} is not allowed (pattern {key_re.pattern})")
        if not isinstance(item, str):
            raise _fail(f"{field}.{key}", f"must be a string, got {type(item).__name__}")
        if len(item) > MAX_VALUE or "\x00" in item:
            raise _fail(f"{field}.{key}", f"must be at most {MAX_VALUE} characters, no NUL")
    return dict(value)


def _duration(body: dict[str, Any], field: str, maximum: float) -> float:
    try:
        return parse_duration(body[field], field, minimum=0, maximum=maximum)
    except DurationError as exc:
        raise ValidationError(str(exc), field=field) from None


def _int(body: dict[str, Any], field: str, lo: int, hi: int) -> int:
    value = body[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, f"must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise _fail(field, f"must be between {lo} and {hi}")
    return value


def secret_env(
    value: Any, *, stored: dict[str, str] | None, env: dict[str, str], field: str = "secret_env"
) -> dict[str, str]:
    """Validate ``secret_env``: like ``env``, plus a value of ``***`` keeps the stored value
    (so a job read from the API, where secrets show as ``***``, can be written back), no
    name may also be in ``env``, and both together stay within MAX_ENV.

    ``stored=None`` leaves the ``***`` values in place for :func:`keep_stored_secrets` to
    resolve later, when the stored values are only known inside the writing transaction.
    """
    values = _string_map(value or {}, field, key_re=ENV_KEY_RE, max_items=MAX_ENV)
    for key in values:
        if key in env:
            raise _fail(f"{field}.{key}", "is also set in env; a variable is one or the other")
    if len(env) + len(values) > MAX_ENV:
        raise _fail(field, f"env and {field} together must have at most {MAX_ENV} entries")
    return values if stored is None else keep_stored_secrets(values, stored, field)


def keep_stored_secrets(
    values: dict[str, str], stored: dict[str, str], field: str = "secret_env"
) -> dict[str, str]:
    """Replace each ``***`` value by the stored value of the same name (400 if none)."""
    resolved = dict(values)
    for key, item in values.items():
        if item == SECRET_MASK:
            if key not in stored:
                raise _fail(
                    f"{field}.{key}", f"{SECRET_MASK!r} stands for a stored value; there is none"
                )
            resolved[key] = stored[key]
    return resolved


def masked(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of an API document with every secret_env value replaced by ``***``."""
    secrets = doc.get("secret_env")
    if not secrets:
        return doc
    return {**doc, "secret_env": dict.fromkeys(secrets, SECRET_MASK)}


def to_api(row: dict[str, Any]) -> dict[str, Any]:
    """The client-facing field names of a stored job (inverse of :func:`validate_job`).

    Secret values are included (a PATCH merges over this); :func:`masked` hides them before
    anything leaves the process.
    """
    return {
        "name": row["name"],
        "description": row["description"],
        "schedule": row["schedule"],
        "timezone": row["timezone"],
        "command": row["command"],
        "args": row["args"],
        "env": row["env"],
        "secret_env": row.get("secret_env") or {},
        "cwd": row["cwd"],
        "timeout": row["timeout_seconds"],
        "max_retries": row["max_retries"],
        "retry_backoff": row["retry_backoff_seconds"],
        "labels": row["labels"],
        "paused": row["paused"],
        "catchup_window": row["catchup_window_seconds"],
        "overlap": row["overlap"],
        "catchup": row["catchup"],
        "max_concurrency": row["max_concurrency"],
    }


def validate_job(
    body: Any,
    *,
    base: dict[str, Any] | None = None,
    default_catchup: float = 60.0,
    policy: ExecPolicy | None = None,
    namespace: str = "default",
) -> dict[str, Any]:
    """Columns for a job from a client body; ``base`` (API fields) is merged under it (PATCH).

    ``policy`` is the command allowlist (common.exec_policy); None allows every command.
    Returns every column except ``next_fire_at`` (which needs the clock).
    """
    if not isinstance(body, dict):
        raise ValidationError("body: must be a JSON object", field="body")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise ValidationError(
            f"{unknown[0]}: unknown field (allowed: {', '.join(sorted(FIELDS))})",
            field=unknown[0],
        )
    merged = {**(base or {}), **body}
    for field in REQUIRED:
        if merged.get(field) is None:
            raise _fail(field, "is required")

    name = _string(merged, "name", max_len=200)
    if not NAME_RE.fullmatch(name) or name.isdigit():
        raise _fail(
            "name",
            "must start with a letter or digit, use only letters, digits, '.', '_' or '-', "
            "be at most 200 characters and not be all digits",
        )
    cols: dict[str, Any] = {"name": name}
    cols["description"] = (
        _string(merged, "description", max_len=2000)
        if merged.get("description") is not None
        else ""
    )
    schedule_text = _string(merged, "schedule", max_len=200, allow_empty=False).strip()
    tz = merged.get("timezone") or "UTC"
    if not isinstance(tz, str):
        raise _fail("timezone", f"must be a string, got {type(tz).__name__}")
    if len(tz) > MAX_TIMEZONE:
        raise _fail("timezone", f"must be at most {MAX_TIMEZONE} characters")
    try:
        parse_schedule(schedule_text, tz)
    except ScheduleError as exc:
        field = "timezone" if str(exc).startswith("timezone") else "schedule"
        raise ValidationError(str(exc), field=field) from None
    cols["schedule"], cols["timezone"] = schedule_text, tz
    cols["command"] = _string(merged, "command", max_len=MAX_COMMAND, allow_empty=False)

    args = merged.get("args")
    if args is not None:
        if not isinstance(args, list):
            raise _fail("args", f"must be a list of strings or null, got {type(args).__name__}")
        if len(args) > MAX_ARGS:
            raise _fail("args", f"must have at most {MAX_ARGS} items")
        for i, arg in enumerate(args):
            if not isinstance(arg, str) or len(arg) > MAX_VALUE or "\x00" in arg:
                raise _fail(f"args[{i}]", "must be a string of at most 8192 characters, no NUL")
    cols["args"] = args
    if base is None or (base.get("command"), base.get("args")) != (cols["command"], args):
        # Only a new or changed command is checked: pausing or re-labelling a job must keep
        # working after the allowlist was tightened (workers still refuse to run it).
        check_command(policy, namespace, cols["command"], args)
    cols["env"] = _string_map(merged.get("env") or {}, "env", key_re=ENV_KEY_RE, max_items=MAX_ENV)
    cols["secret_env"] = secret_env(
        merged.get("secret_env"), stored=(base or {}).get("secret_env") or {}, env=cols["env"]
    )
    cols["labels"] = _string_map(
        merged.get("labels") or {}, "labels", key_re=LABEL_RE, max_items=MAX_LABELS
    )
    cwd = merged.get("cwd")
    if cwd is not None:
        cwd = _string(merged, "cwd", max_len=4096)
        if not cwd.startswith("/"):
            raise _fail("cwd", "must be an absolute path")
    cols["cwd"] = cwd or None

    cols["timeout_seconds"] = (
        _duration(merged, "timeout", MAX_TIMEOUT) if merged.get("timeout") is not None else 0.0
    )
    cols["max_retries"] = (
        _int(merged, "max_retries", 0, MAX_RETRIES) if merged.get("max_retries") is not None else 0
    )
    cols["retry_backoff_seconds"] = (
        _duration(merged, "retry_backoff", MAX_BACKOFF)
        if merged.get("retry_backoff") is not None
        else 10.0
    )
    cols["catchup_window_seconds"] = (
        _duration(merged, "catchup_window", MAX_CATCHUP)
        if merged.get("catchup_window") is not None
        else default_catchup
    )
    paused = merged.get("paused", False)
    if not isinstance(paused, bool):
        raise _fail("paused", f"must be true or false, got {type(paused).__name__}")
    cols["paused"] = paused
    try:
        cols["overlap"] = parse_overlap(merged.get("overlap") or "allow").value
    except ValueError as exc:
        raise ValidationError(str(exc), field="overlap") from None
    catchup = merged.get("catchup") or "all"
    if not isinstance(catchup, str) or catchup not in {m.value for m in CatchupMode}:
        raise _fail("catchup", f"must be one of all, latest, none, got {catchup!r}")
    cols["catchup"] = catchup
    cols["max_concurrency"] = (
        _int(merged, "max_concurrency", 0, MAX_CONCURRENCY)
        if merged.get("max_concurrency") is not None
        else 0
    )
    return cols
