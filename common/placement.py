"""Which worker gets a run: label match, command allowlist, free capacity, least loaded.

Pure; no I/O. A worker with an allowlist (CHRONORAFT_WORKER_ALLOWED_COMMANDS, reported in its
heartbeat) only gets runs whose command it will accept: the check is
:func:`common.exec_policy.refusal`, the very function the worker applies to every RunTask, so
leader and worker cannot disagree about a command (a worker's list may still change between
its heartbeat and a dispatch; the worker's ``not_allowed`` refusal stays the backstop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from common.exec_policy import refusal

KIND_HTTP = "http"
"""An http run sends a request and starts no process: a worker's allowlist does not apply to
it (the worker checks only ``cmd`` tasks), so any worker may take it."""


@dataclass(frozen=True)
class WorkerSlot:
    worker_id: str
    address: str
    labels: Mapping[str, str]
    capacity: int
    draining: bool = False
    allowed_commands: tuple[str, ...] | None = None
    """The worker's allowlist; None: no allowlist, every command runs there."""


@dataclass(frozen=True)
class RunNeeds:
    """What a run asks of a worker: its labels, and for a ``cmd`` run the command it runs.

    ``args`` None means a shell command (``command`` is run by ``/bin/sh -c``), exactly as
    the leader sends it (``use_shell = args is None``).
    """

    selector: Mapping[str, str] = field(default_factory=dict)
    kind: str = "cmd"
    command: str | None = None
    """None: no command to check (a bare label selector)."""
    args: tuple[str, ...] | None = None


Demand = RunNeeds | Mapping[str, str]
"""A run for :func:`place`: its needs, or just a label selector (no command to check)."""


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Every selector key must be present on the worker with the same value."""
    return all(labels.get(key) == value for key, value in selector.items())


def command_allowed(needs: RunNeeds, allowed_commands: tuple[str, ...] | None) -> bool:
    """Would a worker with this allowlist run this run? Decided as the worker decides it."""
    if allowed_commands is None or needs.kind == KIND_HTTP or needs.command is None:
        return True  # no allowlist, no process, or a bare selector: nothing to check
    return refusal(allowed_commands, needs.command, needs.args) is None


def _needs(demand: Demand) -> RunNeeds:
    return demand if isinstance(demand, RunNeeds) else RunNeeds(selector=demand)


def placeable(demand: Demand, workers: Sequence[WorkerSlot]) -> bool:
    """Could some live worker take this run once it has room? (Load is not looked at.)

    A run that no worker can take would otherwise stay at the head of every dispatch batch
    while it waits, and enough of them would starve the runs behind them.
    """
    needs = _needs(demand)
    return any(
        not w.draining
        and labels_match(needs.selector, w.labels)
        and command_allowed(needs, w.allowed_commands)
        for w in workers
    )


def allowed_nowhere(demand: Demand, workers: Sequence[WorkerSlot]) -> bool:
    """True when live workers match the run's labels but none of them allows its command.

    Draining workers do not count (they take no work). A run whose labels match no worker
    is not "allowed nowhere": it waits for a worker with those labels, as it always has.
    """
    selector = _needs(demand).selector
    matching = any(not w.draining and labels_match(selector, w.labels) for w in workers)
    return matching and not placeable(demand, workers)


def place(
    demands: Sequence[Demand],
    workers: list[WorkerSlot],
    loads: Mapping[str, int],
    excluded: frozenset[str] = frozenset(),
) -> list[WorkerSlot | None]:
    """For each run (in priority order) pick a worker or None.

    A run is given by its :class:`RunNeeds`, or by a bare label selector when there is no
    command to check. Only workers whose labels match and whose allowlist lets the run's
    command through qualify. Least loaded by ratio of active runs to capacity, ties by id so
    placement is deterministic; loads grow as runs are placed so one batch spreads over the
    fleet.
    """
    current = {w.worker_id: int(loads.get(w.worker_id, 0)) for w in workers}
    usable = [w for w in workers if not w.draining and w.worker_id not in excluded]
    # Runs of one job share a command and workers of one pool share a list: decide each
    # (list, run) pair once per call, not once per run and worker.
    verdicts: dict[tuple[tuple[str, ...], str, tuple[str, ...] | None], bool] = {}
    chosen: list[WorkerSlot | None] = []
    for demand in demands:
        needs = _needs(demand)
        best: WorkerSlot | None = None
        best_key: tuple[float, str] | None = None
        for worker in usable:
            load = current[worker.worker_id]
            if load >= worker.capacity or not labels_match(needs.selector, worker.labels):
                continue
            allowlist = worker.allowed_commands
            if allowlist is not None and needs.kind != KIND_HTTP:
                verdict_key = (allowlist, needs.command, needs.args)
                allowed = verdicts.get(verdict_key)
                if allowed is None:
                    allowed = verdicts[verdict_key] = command_allowed(needs, allowlist)
                if not allowed:
                    continue
            key = (load / max(worker.capacity, 1), worker.worker_id)
            if best_key is None or key < best_key:
                best, best_key = worker, key
        if best is not None:
            current[best.worker_id] += 1
        chosen.append(best)
    return chosen
