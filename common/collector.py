"""How the long-running processes (controller, worker) set Python's cyclic garbage collector.

Measured in ``bench end_to_end`` (two workers, ~1,400 runs/s, 45 s, gc callbacks timing each
pass): with the interpreter's defaults the leader spent ~0.9 s in the collector, half of it
in 9-10 full passes of up to 84 ms (each walked the ~69,000 objects loaded at start:
modules, gRPC, protobuf, psycopg), and each worker ~0.65 s. A full pass stops the leader's
event loop: no tick, no dispatch, no API answer meanwhile.

- :func:`gc.freeze` once everything is imported moves those objects out of every later pass
  (in the worker, which froze them first, that alone was ~6 % of its CPU per started
  attempt in ``bench.worker_spawn``).
- A young generation of 10,000 objects instead of 700: a dispatch or result batch creates
  thousands of short-lived containers (one dict per run row), nearly all freed by reference
  counting within the batch; collecting every 700 promoted the ones still in use to older
  generations, to be walked again.
After both: the leader ~0.1 s and no full pass in the same 45 s, a worker 0.26-0.38 s.
Cyclic garbage now waits for 10,000 allocations before it is found: a few MB at most.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""Net allocations of tracked objects between young collections (Python's default: 700)."""


def settle_collector() -> None:
    """Call once, after the imports and before the process starts serving."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
