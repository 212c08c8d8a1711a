"""An HTTP load generator for the REST API (aiohttp client, bounded in time).

Two shapes: a closed loop (``concurrency`` clients, each sends its next request when the
last one answered: the throughput the API can give) and a fixed rate (requests due at
``rate`` per second, latency counted from when each was DUE, so a server that falls behind
shows it in p99 instead of quietly lowering the rate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.stats import Summary, summarize

Request = tuple[str, str, Any]
"""(method, absolute URL, JSON body or None)."""


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    first_error: str = ""

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.elapsed if self.elapsed else 0.0

    @property
    def latency(self) -> Summary:
        return summarize(self.latencies_ms)


async def _send(
    session: aiohttp.ClientSession, request: Request, result: LoadResult, since: float
) -> None:
    method, url, body = request
    try:
        async with session.request(method, url, json=body) as resp:
            await resp.read()
            ok = 200 <= resp.status < 300
            status = str(resp.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        ok, status = False, type(exc).__name__
    if ok:
        result.latencies_ms.append((time.perf_counter() - since) * 1000)
    else:
        result.errors += 1
        result.first_error = result.first_error or f"{method} {url}: {status}"


def _session(token: str, concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {token}"},
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=10),
    )


async def closed_loop(
    make: Callable[[int], Request], token: str, concurrency: int, seconds: float
) -> LoadResult:
    """``concurrency`` clients sending back to back for ``seconds``."""
    result = LoadResult()
    counter = iter(range(10**9))
    async with _session(token, concurrency) as session:
        started = time.perf_counter()
        deadline = started + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                await _send(session, make(next(counter)), result, sent)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - started
    return result


async def fixed_rate(
    make: Callable[[int], Request], token: str, concurrency: int, rate: float, seconds: float
) -> LoadResult:
    """``rate`` requests per second for ``seconds`` through at most ``concurrency``
    connections; each latency runs from the request's due time."""
    result = LoadResult()
    total = int(rate * seconds)
    counter = iter(range(total))
    async with _session(token, concurrency) as session:
        started = time.perf_counter()

        async def client() -> None:
            for i in counter:
                due = started + i / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                await _send(session, make(i), result, due)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - started
    return result
