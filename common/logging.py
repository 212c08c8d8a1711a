"""Structured logging: ``key=value`` text or one JSON object per line.

Call sites pass context with ``extra=ctx(run_id=..., epoch=...)``; the formatter appends it,
together with the node name set once by :func:`configure`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_CTX_KEY = "chronoraft_ctx"


def ctx(**fields: Any) -> dict[str, Any]:
    """Context fields for one log call: ``log.info("dispatched", extra=ctx(run_id=7))``."""
    return {_CTX_KEY: fields}


class _Formatter(logging.Formatter):
    def __init__(self, node: str, as_json: bool) -> None:
        super().__init__()
        self._node = node
        self._json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"node": self._node}
        fields.update(getattr(record, _CTX_KEY, {}) or {})
        message = record.getMessage()
        if self._json:
            doc = {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": message,
                **fields,
            }
            if record.exc_info:
                doc["exc"] = self.formatException(record.exc_info)
            return json.dumps(doc, default=str)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        pairs = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        line = (
            f"{stamp}.{int(record.msecs):03d} {record.levelname:<7} {record.name}: "
            f"{message} {pairs}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


REPEAT_INTERVAL = 10.0
"""Seconds during which a library's repeated log line is written once (see _RepeatLimiter)."""


class _RepeatLimiter(logging.Filter):
    """Writes a line that a library repeats at most once per ``interval``, with the count.

    PySyncObj logs from its tick (every 20 ms, per peer): one failure that repeats filled
    511 MB of log in 12 minutes (a leader with no snapshot to send, see controller/raft.py).
    Our own lines are never held back; only those of the ``libraries`` namespaces.
    """

    def __init__(self, libraries: tuple[str, ...], interval: float = REPEAT_INTERVAL) -> None:
        super().__init__()
        self._libraries = libraries
        self._interval = interval
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._libraries):
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self._interval:
            self._seen[key] = (last, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {now - last:.0f} s]"
        return True


def configure(level: str, fmt: str, node: str) -> None:
    """Install the chronoraft formatter on the root logger (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(node, fmt.lower() == "json"))
    handler.addFilter(_RepeatLimiter(("pysyncobj",)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # PySyncObj and grpc are chatty at DEBUG; keep them at WARNING unless asked.
    for noisy in ("pysyncobj", "grpc", "aiohttp.access", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
