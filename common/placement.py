"""Which worker gets a run: label match, free capacity, least loaded. Pure; no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSlot:
    worker_id: str
    address: str
    labels: Mapping[str, str]
    capacity: int
    draining: bool = False


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Every selector key must be present on the worker with the same value."""
    return all(labels.get(key) == value for key, value in selector.items())


def place(
    selectors: list[Mapping[str, str]],
    workers: list[WorkerSlot],
    loads: Mapping[str, int],
    excluded: frozenset[str] = frozenset(),
) -> list[WorkerSlot | None]:
    """For each run (given by its label selector, in priority order) pick a worker or None.

    Least loaded by ratio of active runs to capacity, ties by id so placement is
    deterministic; loads grow as runs are placed so one batch spreads over the fleet.
    """
    current = {w.worker_id: int(loads.get(w.worker_id, 0)) for w in workers}
    usable = [w for w in workers if not w.draining and w.worker_id not in excluded]
    chosen: list[WorkerSlot | None] = []
    for selector in selectors:
        best: WorkerSlot | None = None
        best_key: tuple[float, str] | None = None
        for worker in usable:
            load = current[worker.worker_id]
            if load >= worker.capacity or not labels_match(selector, worker.labels):
                continue
            key = (load / max(worker.capacity, 1), worker.worker_id)
            if best_key is None or key < best_key:
                best, best_key = worker, key
        if best is not None:
            current[best.worker_id] += 1
        chosen.append(best)
    return chosen
