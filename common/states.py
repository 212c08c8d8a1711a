"""The run state machine and the overlap policies.

Why an explicit table: a run is touched by the leader (dispatch, timeouts, retries), by
workers (start, result) and by the API (cancel), often concurrently and after restarts.
Every writer checks its move against ``TRANSITIONS`` and performs it as a guarded UPDATE
that names the state it expects, so a late or duplicated message can never resurrect a
finished run. Terminal states have no way out on purpose: a retry is a new attempt that
goes back to ``pending`` *before* the run is finished, never a reopening of a final state.
Same-state "transitions" are not allowed either; idempotent re-reports must be recognised
by the caller (e.g. same attempt number) rather than replayed through the machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "TRANSITIONS",
    "MANUAL_ACTIONS",
    "InvalidTransition",
    "OverlapPolicy",
    "RunState",
    "can_transition",
    "check_transition",
    "manual_target",
    "parse_overlap",
]


class RunState(StrEnum):
    """Where a run is; the string values are what PostgreSQL and the API store and show.

    ``waiting`` and ``upstream_failed`` belong to DAG nodes: a node waits until the leader
    finds its parents done, and is ``upstream_failed`` when a parent failed for good.
    """

    WAITING = "waiting"
    PENDING = "pending"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"


TERMINAL: frozenset[RunState] = frozenset(
    {
        RunState.SUCCEEDED,
        RunState.FAILED,
        RunState.TIMED_OUT,
        RunState.CANCELLED,
        RunState.SKIPPED,
        RunState.UPSTREAM_FAILED,
    }
)
"""States a run never leaves on its own (only an operator's retry or complete reopens one)."""

ACTIVE: frozenset[RunState] = frozenset({RunState.DISPATCHED, RunState.RUNNING})
"""States in which a worker holds (or may hold) the run, i.e. what overlap policies count."""

TRANSITIONS: Mapping[RunState, frozenset[RunState]] = MappingProxyType(
    {
        RunState.WAITING: frozenset(
            {RunState.PENDING, RunState.UPSTREAM_FAILED, RunState.CANCELLED, RunState.SKIPPED}
        ),
        RunState.PENDING: frozenset({RunState.DISPATCHED, RunState.CANCELLED, RunState.SKIPPED}),
        # Back to pending: the worker refused or died before starting, or a retry is queued.
        RunState.DISPATCHED: frozenset(
            {
                RunState.RUNNING,
                RunState.PENDING,
                RunState.SUCCEEDED,
                RunState.FAILED,
                RunState.TIMED_OUT,
                RunState.CANCELLED,
            }
        ),
        # Back to pending: a retry after failure, or a re-queue after losing the worker.
        RunState.RUNNING: frozenset(
            {
                RunState.PENDING,
                RunState.SUCCEEDED,
                RunState.FAILED,
                RunState.TIMED_OUT,
                RunState.CANCELLED,
            }
        ),
        **{state: frozenset() for state in TERMINAL},
    }
)


class InvalidTransition(Exception):
    """A move the state machine forbids; ``code`` is stable for the API's error mapping."""

    code: ClassVar[str] = "invalid_transition"

    def __init__(self, current: object, target: object) -> None:
        super().__init__(f"invalid transition: {current} -> {target}")
        self.current = current
        self.target = target


def _state(value: object) -> RunState | None:
    try:
        return RunState(value)
    except ValueError:
        return None


def can_transition(current: RunState | str, target: RunState | str) -> bool:
    """Whether ``current -> target`` is allowed; unknown state names are simply not allowed."""
    a, b = _state(current), _state(target)
    return a is not None and b is not None and b in TRANSITIONS[a]


def check_transition(current: RunState | str, target: RunState | str) -> None:
    """Raise ``InvalidTransition`` unless ``current -> target`` is allowed."""
    if not can_transition(current, target):
        raise InvalidTransition(current, target)


_OPEN = frozenset({RunState.WAITING, RunState.PENDING, RunState.DISPATCHED, RunState.RUNNING})
_RETRYABLE = frozenset({RunState.FAILED, RunState.TIMED_OUT, RunState.CANCELLED})

MANUAL_ACTIONS: Mapping[str, tuple[frozenset[RunState], RunState]] = MappingProxyType(
    {
        # An operator vouches for the work (e.g. done by hand): also unblocks descendants.
        "complete": (
            _OPEN | _RETRYABLE | {RunState.UPSTREAM_FAILED},
            RunState.SUCCEEDED,
        ),
        "fail": (_OPEN, RunState.FAILED),
        # A new attempt; the node waits for the leader to find its parents done again.
        "retry": (_RETRYABLE, RunState.WAITING),
        # Active runs are asked to stop; their worker reports them cancelled.
        "cancel": (_OPEN, RunState.CANCELLED),
    }
)
"""Operator actions on a DAG node: the states each may start from, and where it leads.

These are the only moves that leave a terminal state, and only by an explicit request."""


def manual_target(action: str, current: RunState | str) -> RunState:
    """Where ``action`` takes a node in ``current``; ``InvalidTransition`` if it makes no sense."""
    allowed, target = MANUAL_ACTIONS[action]
    state = _state(current)
    if state is None or state not in allowed:
        raise InvalidTransition(current, action)
    return target


class OverlapPolicy(StrEnum):
    """What to do with a new slot while an earlier run of the same job is still active."""

    ALLOW = "allow"  # run concurrently
    SKIP = "skip"  # drop the new slot (Kubernetes "Forbid")
    BUFFER_ONE = "buffer_one"  # keep at most one waiting run, drop the rest
    BUFFER_ALL = "buffer_all"  # queue every slot, run them one after another
    CANCEL_OTHER = "cancel_other"  # cancel the active run, start the new one ("Replace")


_OVERLAP_ALIASES: Mapping[str, OverlapPolicy] = MappingProxyType(
    {"forbid": OverlapPolicy.SKIP, "replace": OverlapPolicy.CANCEL_OTHER}
)


def parse_overlap(value: str) -> OverlapPolicy:
    """The policy named by ``value``, accepting Kubernetes' ``forbid``/``replace`` spellings.

    Matching ignores case and surrounding whitespace because the value comes from humans
    writing YAML or JSON; the error names the field so the API can point at it.
    """
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _OVERLAP_ALIASES:
            return _OVERLAP_ALIASES[key]
        try:
            return OverlapPolicy(key)
        except ValueError:
            pass
    choices = ", ".join(p.value for p in OverlapPolicy)
    raise ValueError(f"overlap: must be one of {choices} (or forbid, replace), got {value!r}")
