"""The bare spawn rate: how many ``true`` processes one Python process starts per second.

``python -m bench.spawn_probe --seconds 5 --inflight 8`` keeps ``inflight`` children
running at once with ``asyncio.create_subprocess_exec`` (as a worker does) for the given
time and prints ``{"spawned": n, "elapsed": s}``. It is the ceiling for a worker process;
:mod:`bench.limits` runs several of these side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path


async def spawn_for(seconds: float, inflight: int) -> tuple[int, float]:
    """Spawn-and-wait ``true`` in ``inflight`` loops until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    count = 0

    async def loop() -> None:
        nonlocal count
        while time.monotonic() < deadline:
            proc = await asyncio.create_subprocess_exec(
                "true",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await proc.wait()
            count += 1

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(max(1, inflight))))
    return count, time.monotonic() - started


ROOT = Path(__file__).resolve().parent.parent
"""Where ``python -m bench.spawn_probe`` runs from (the project root)."""


def command(seconds: float, inflight: int, start_at: float = 0.0) -> list[str]:
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
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--start-at", type=float, default=0.0, help="time.time() to begin at")
    args = parser.parse_args(argv)
    while time.time() < args.start_at:  # several probes start together
        time.sleep(min(0.05, args.start_at - time.time()))
    spawned, elapsed = asyncio.run(spawn_for(args.seconds, args.inflight))
    print(json.dumps({"spawned": spawned, "elapsed": elapsed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
