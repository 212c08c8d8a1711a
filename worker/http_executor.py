"""Run one attempt of an ``http`` job: send one request and judge the final response.

Same contract as the cmd executor (:func:`worker.executor.execute`): a spec in, a
:class:`~worker.executor.TaskResult` out, and nothing the job got wrong (bad URL, refused
connection, unexpected status) raises, so the service, the spool, the reporter and CancelTask
treat both kinds alike. Redirects are followed (aiohttp's default, at most 10) and the final
response decides; its status line is the first line of the output.

Output keeps the *head* of the response, unlike the cmd executor's tail: the status line and
the start of a body (where an error document begins) are what explains a run, and a body
longer than the limit need not be downloaded at all, so reading stops there.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from common.logging import ctx
from common.version import version
from worker.executor import CancelToken, StartedProcess, TaskResult, TaskState

log = logging.getLogger(__name__)

USER_AGENT = f"chronoraft-worker/{version()}"
"""Sent unless the job sets its own User-Agent, so the called service can tell who calls."""
_READ_CHUNK = 65_536


@dataclass(frozen=True)
class HttpTaskSpec:
    """One attempt of an http job; frozen so a running attempt cannot drift."""

    run_id: int
    attempt: int
    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
    """Sent encoded as UTF-8; empty means no body."""
    expected_status: int = 0
    """The one status that counts as success; 0 (or less) means any 2xx."""
    timeout_seconds: float = 0.0
    """For the whole exchange, redirects and body included; 0 (or less) means no timeout."""
    output_limit_bytes: int = 65_536
    """At most this many bytes of output are kept: the first ones."""

    def describe(self) -> str:
        """Method and URL for logs, without credentials, query or fragment (where secrets
        such as tokens tend to be)."""
        try:
            url = URL(self.url)
            if url.absolute:
                url = url.with_user(None).with_query(None).with_fragment(None)
        except (ValueError, TypeError):
            return f"{self.method} (invalid URL)"
        return f"{self.method} {url}"


class ResponseHead:
    """The first ``limit`` bytes of ``HTTP <status> <reason>\\n`` followed by the body.

    Filled while the response arrives, so a timeout or a cancel in the middle of a slow body
    still reports what came so far.
    """

    def __init__(self, limit: int) -> None:
        self._limit = max(0, limit)
        self._buf = bytearray()
        self._line_end = 0
        self._charset = "utf-8"
        self.truncated = False

    def status_line(self, status: int, reason: str, charset: str | None) -> None:
        self.feed(f"HTTP {status} {reason}".rstrip().encode() + b"\n")
        self._line_end = len(self._buf)
        if charset:
            try:
                self._charset = codecs.lookup(charset).name
            except LookupError:
                pass  # an unknown charset label: fall back to UTF-8 with replacements

    def feed(self, chunk: bytes) -> bool:
        """Keep what fits; False once something was cut (the rest need not be read)."""
        room = self._limit - len(self._buf)
        self._buf += chunk[:room]
        if len(chunk) > room:
            self.truncated = True
            return False
        return True

    def text(self) -> str:
        line = bytes(self._buf[: self._line_end]).decode("utf-8", errors="replace")
        decoder = codecs.getincrementaldecoder(self._charset)(errors="replace")
        # When cut, a character split by the cut is dropped rather than shown as garbage.
        body = decoder.decode(bytes(self._buf[self._line_end :]), final=not self.truncated)
        return line + body


async def execute_http(
    spec: HttpTaskSpec,
    cancel: CancelToken | None = None,
    *,
    on_started: Callable[[float, StartedProcess | None], None] | None = None,
) -> TaskResult:
    """Send ``spec``'s request and return the result; only asyncio cancellation escapes.

    ``on_started(started_at, None)`` is called once, when the request is sent (there is no
    process, hence no pid), so RunTask can answer without waiting for the response.
    A cancel or a timeout aborts the exchange by closing its connection.
    """
    cancel = cancel or CancelToken()
    started_at = time.time()
    if cancel.cancelled:
        _notify(on_started, started_at)
        return _result(TaskState.CANCELLED, cancel.reason, None, started_at)
    if not spec.url:
        _notify(on_started, started_at)
        return _result(TaskState.FAILED, "empty url", None, started_at)

    head = ResponseHead(spec.output_limit_bytes)
    started_at = time.time()
    _notify(on_started, started_at)
    exchange = asyncio.create_task(_exchange(spec, head))
    cancelled = cancel.waiter()
    timeout = spec.timeout_seconds if spec.timeout_seconds > 0 else None
    try:
        done, _ = await asyncio.wait(
            {exchange, cancelled}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    except asyncio.CancelledError:
        exchange.cancel()
        raise
    finally:
        cancelled.cancel()

    if exchange in done:
        state, error = _outcome(exchange, spec.expected_status)
    else:
        exchange.cancel()  # closes the connection: the server sees the client go
        await asyncio.wait({exchange})
        if cancelled in done:
            state, error = TaskState.CANCELLED, cancel.reason or "cancelled"
        else:
            state, error = TaskState.TIMED_OUT, f"timed out after {spec.timeout_seconds:g}s"
    log.debug(
        "http attempt ended: %s %s",
        state,
        error,
        extra=ctx(run_id=spec.run_id, attempt=spec.attempt),
    )
    return _result(state, error, head, started_at)


async def _exchange(spec: HttpTaskSpec, head: ResponseHead) -> int:
    """The request itself; returns the final status. Bounded by the caller, not by aiohttp
    (whose default total timeout of 5 minutes would contradict "0 = no timeout")."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None), headers={"User-Agent": USER_AGENT}
    ) as session:
        async with session.request(
            spec.method or "GET",
            spec.url,
            headers=dict(spec.headers),
            data=spec.body.encode() if spec.body else None,
        ) as response:
            head.status_line(response.status, response.reason or "", response.charset)
            async for chunk in response.content.iter_chunked(_READ_CHUNK):
                if not head.feed(chunk):
                    break
            return response.status


def _outcome(exchange: asyncio.Task[int], expected: int) -> tuple[TaskState, str]:
    exc = exchange.exception()
    if exc is None:
        status = exchange.result()
        if expected > 0:
            ok, wanted = status == expected, str(expected)
        else:
            ok, wanted = 200 <= status < 300, "2xx"
        if ok:
            return TaskState.SUCCEEDED, ""
        return TaskState.FAILED, f"HTTP status {status}, expected {wanted}"
    if isinstance(exc, aiohttp.InvalidURL):
        return TaskState.FAILED, f"invalid url: {exc}"
    if isinstance(exc, aiohttp.ClientError | OSError | ValueError):
        return TaskState.FAILED, f"request failed: {str(exc) or type(exc).__name__}"
    raise exc  # a bug, not the job's doing: the service reports it as a worker error


def _notify(
    callback: Callable[[float, StartedProcess | None], None] | None, started_at: float
) -> None:
    if callback is not None:
        callback(started_at, None)


def _result(
    state: TaskState, error: str, head: ResponseHead | None, started_at: float
) -> TaskResult:
    return TaskResult(
        state=state,
        exit_code=None,
        output=head.text() if head is not None else "",
        output_truncated=head.truncated if head is not None else False,
        error=error,
        started_at=started_at,
        finished_at=time.time(),
    )
