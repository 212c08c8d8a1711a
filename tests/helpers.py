"""Small helpers for tests that talk to a real cluster over HTTP."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from controller.local_cluster import http_json

T = TypeVar("T")

ADMIN_TOKEN = f"test-admin-{secrets.token_hex(12)}"
"""The admin API token of every cluster the tests start (see conftest.build_cluster)."""


class Unavailable(AssertionError):
    """The API answered 503 (database away); pollers treat it as 'not yet'."""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(
    what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.2
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Unavailable as exc:
            last = exc
        if last and not isinstance(last, Unavailable):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def api(
    method: str, base: str, path: str, body: Any = None, token: str = ADMIN_TOKEN
) -> tuple[int, Any]:
    return http_json(method, base + path, body, timeout=10, token=token)


def all_runs(base: str, job_id: int) -> list[dict[str, Any]]:
    """Every run of a job, following pagination."""
    runs: list[dict[str, Any]] = []
    offset = 0
    while True:
        status, body = api("GET", base, f"/api/v1/runs?job_id={job_id}&limit=1000&offset={offset}")
        if status == 503:
            raise Unavailable(body)
        assert status == 200, body
        runs.extend(body["items"])
        if len(body["items"]) < 1000:
            return runs
        offset += 1000
