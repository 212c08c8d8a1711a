"""The bare spawn rate: how many ``true`` processes one Python process starts per second.

``python -m bench.spawn_probe --seconds 5 --inflight 8 --method pidfd`` keeps ``inflight``
children running at once for the given time and prints ``{"spawned": n, "elapsed": s}``.
Two ways to start and wait for them: ``asyncio`` (``asyncio.create_subprocess_exec`` with
Python 3.11's default child watcher, the way most asyncio code does it) and ``pidfd``
(``subprocess.Popen``, then the exit seen on a pidfd on the event loop, the way the worker's
executor does it). It is the ceiling for a worker process; :mod:`bench.limits` runs several
of these side by side and takes the faster method as the machine's limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("asyncio", "pidfd") if hasattr(os, "pidfd_open") else ("asyncio",)
"""How the probe may spawn; pidfd needs ``os.pidfd_open`` (Linux, kernel 5.3 or later)."""


async def _spawn_asyncio() -> None:
    proc = await asyncio.create_subprocess_exec(
        "true",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()


async def _spawn_pidfd() -> None:
    proc = subprocess.Popen(
        ["true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    pidfd = os.pidfd_open(proc.pid)
    loop.add_reader(pidfd, exited.set_result, None)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    proc.wait()  # a zombie by now: reaped at once


async def spawn_for(seconds: float, inflight: int, method: str = "asyncio") -> tuple[int, float]:
    """Spawn-and-wait ``true`` in ``inflight`` loops until ``seconds`` have passed."""
    spawn = _spawn_pidfd if method == "pidfd" else _spawn_asyncio
    deadline = time.monotonic() + seconds
    count = 0

    async def loop() -> None:
        nonlocal count
        while time.monotonic() < deadline:
            await spawn()
            count += 1

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(max(1, inflight))))
    return count, time.monotonic() - started


ROOT = Path(__file__).resolve().parent.parent
"""Where ``python -m bench.spawn_probe`` runs from (the project root)."""


def command(
    seconds: float, inflight: int, start_at: float = 0.0, method: str = "asyncio"
) -> list[str]:
    """The argv of one probe, to run with ``cwd=ROOT``."""
    return [
        sys.executable,
        "-m",
        "bench.spawn_probe",
        "--seconds",
        str(seconds),
        "--inflight",
        str(inflight),
        "--start-at",
        str(start_at),
        "--method",
        method,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--start-at", type=float, default=0.0, help="time.time() to begin at")
    parser.add_argument("--method", choices=METHODS, default="asyncio")
    args = parser.parse_args(argv)
    while time.time() < args.start_at:  # several probes start together
        time.sleep(min(0.05, args.start_at - time.time()))
    spawned, elapsed = asyncio.run(spawn_for(args.seconds, args.inflight, args.method))
    print(json.dumps({"spawned": spawned, "elapsed": elapsed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
