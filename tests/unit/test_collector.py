"""The collector settings of the long-running processes (common/collector.py).

Run in a fresh interpreter: freezing and thresholds are process-wide, and the test process
must keep its own."""

from __future__ import annotations

import json
import subprocess
import sys

from common.collector import YOUNG_THRESHOLD

PROBE = """
import gc, json, weakref
import grpc, psycopg  # loaded before settling, as the controller and worker do
from common.collector import settle_collector

settle_collector()
frozen = gc.get_freeze_count()

class Node:
    pass

collected = []
for i in range(3 * YOUNG):
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: reference counting alone never frees it
    if i % 1000 == 0:
        weakref.finalize(a, collected.append, i)
    del a, b
print(json.dumps({"frozen": frozen, "threshold": gc.get_threshold(), "collected": len(collected)}))
"""


def test_settled_collector_freezes_startup_objects_and_still_frees_cycles() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.replace("YOUNG", str(YOUNG_THRESHOLD))],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    seen = json.loads(out.stdout)
    assert seen["frozen"] > 10_000  # the imported modules are out of every later pass
    assert seen["threshold"][0] == YOUNG_THRESHOLD
    # 30,000 cycles were dropped: young collections ran on their own and found them (all
    # but those still in the young generation when the loop ended).
    assert seen["collected"] >= 20
