"""A small REST client for the CLI: bearer token, JSON errors, and controller failover.

Every controller serves the same API, so the client tries the configured URLs in order and
moves on only when one does not answer at all; an HTTP error is the cluster's answer and is
reported as it is (status, code and message from the API's error body).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_URLS = ("http://127.0.0.1:8080", "http://127.0.0.1:8081", "http://127.0.0.1:8082")


class ApiError(Exception):
    """The API answered 4xx/5xx (``status`` > 0) or no controller answered (``status`` 0)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        if self.status == 0:
            return self.message
        return f"{self.status} {self.code}: {self.message}"


def split_urls(values: Sequence[str]) -> tuple[str, ...]:
    """``--url`` may repeat and each may be comma separated (as ``CHRONORAFT_URL`` is)."""
    return tuple(u.strip().rstrip("/") for v in values for u in v.split(",") if u.strip())


class ApiClient:
    def __init__(self, urls: Sequence[str], token: str = "", timeout: float = 10.0) -> None:
        self.urls = tuple(urls) or DEFAULT_URLS
        self.token = token
        self.timeout = timeout
        self.used: str | None = None
        """The URL that answered last (the next call starts there)."""

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        suffix = "/api/v1/" + path.lstrip("/")
        if query:
            suffix += "?" + urllib.parse.urlencode(query)
        order = list(self.urls)
        if self.used in order:
            order.remove(self.used)
            order.insert(0, self.used)
        failures = []
        for base in order:
            try:
                result = self._once(method, base + suffix, body)
            except OSError as exc:
                reason = getattr(exc, "reason", None) or exc
                failures.append(f"{base}: {reason}")
                # A write that may have reached a controller is not sent twice.
                if method == "GET" or isinstance(reason, ConnectionRefusedError):
                    continue
                break
            self.used = base
            return result
        raise ApiError(0, "unreachable", "no answer from " + "; ".join(failures))

    def _once(self, method: str, url: str, body: Any) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return _decode(resp.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            payload = _decode(raw)
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            message = error.get("message") or (raw.decode(errors="replace").strip() or exc.reason)
            raise ApiError(exc.code, error.get("code") or "http_error", str(message)) from None


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw.decode(errors="replace")
