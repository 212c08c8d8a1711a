"""DAG graph logic: cycle checks, topological order, and what a DAG run does next.

Why a pure module: the REST layer refuses an edge that would close a cycle inside the same
transaction that inserts it (it reads the edge set under lock and calls ``check_new_edges``),
and the leader decides which nodes of a DAG run to start on every tick, after failovers and
restarts. Both must give the same answer for the same rows, whoever asks and whenever, so
nothing here reads a clock, a database or a random source: ``now`` is a parameter and every
tie is broken by node id.

Edges
    ``Edge(parent, child, kind)``: ``child`` depends on ``parent``. Both kinds gate
    readiness in exactly the same way; ``data`` (the default) additionally means the child
    receives the parent's output (as an env var or file, see ``data_parents``), while
    ``order-only`` only orders the two. Wherever edges are accepted, plain
    ``(parent, child)`` tuples are accepted too. Duplicate edges are harmless (idempotent).

Cycles
    A self-loop ``a → a`` is a cycle. A reported cycle is a list of distinct node ids
    ``[a, b, c]`` meaning ``a → b → c → a``, rotated to start at its smallest id, and found by
    a depth-first search that starts from sorted ids and visits children in sorted order, so
    the same input always reports the same cycle. The search is iterative, so depth never
    hits Python's recursion limit (a 10^4-node chain is checked in milliseconds).
    ``check_new_edges`` searches only from the parents of the new edges, so a global check
    over every job shared between DAGs costs as much as the part of the graph the new edges
    can reach.

Readiness of a DAG run (``next_actions``), evaluated in topological order so that every rule
propagates transitively within a single call. Only ``pending`` and ``waiting`` nodes are ever
moved; nodes that have started or finished are left alone.

1. If a parent is ``failed`` (out of retries) or ``upstream_failed``, the node becomes
   ``upstream_failed``.
2. Otherwise, if a parent is ``cancelled``, the node becomes ``cancelled``: cancelling a job
   instance cancels everything that depends on it.
3. Otherwise, if a parent is ``skipped``, the node becomes ``skipped``: it would need the
   skipped node's output or ordering, and neither will ever come.
4. Otherwise, once every parent has ``succeeded`` (a root has no parents), the node may start
   at ``parents_done_at + delay_interval`` (the last parent's finish time, recorded by the
   caller; for a root, e.g. the run's start) and not before ``not_before`` (e.g. a retry's
   back-off). ``parents_done_at`` is needed only when ``delay_interval > 0``. If that time is
   ``<= now`` the node is in ``start`` (the boundary is inclusive); otherwise it is in
   ``delayed`` and the earliest such time is ``wake_at``, so the leader can sleep until then.
5. Otherwise (some parent is still pending, waiting, ready or running) nothing happens.

A node between retry attempts is not ``failed``: only a node out of retries is. The caller
keeps it ``running``, or puts it back to ``pending`` with ``not_before`` set to the back-off.
A manual retry of a ``failed`` node must reset its blocked descendants (``descendants``) to
``pending``; this module never reopens a terminal state.

Overall run state (``run_state``): ``running`` while any node can still run; once every node
is terminal, ``failed`` if any node is ``failed`` or ``upstream_failed``, else ``cancelled`` if
any is ``cancelled``, else ``succeeded`` (every node ``succeeded`` or ``skipped``; an empty DAG
has nothing left to do and succeeds). Given the edges, nodes that rules 1-3 would mark count
as already marked, so a run whose failed branch has blocked every remaining node is
``failed`` even before the caller has written the ``upstream_failed`` rows.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar

__all__ = [
    "TERMINAL_NODE_STATES",
    "CycleError",
    "DagRunState",
    "Edge",
    "EdgeKind",
    "EdgeLike",
    "NodeState",
    "NodeStatus",
    "ReadyPlan",
    "check_new_edges",
    "data_parents",
    "descendants",
    "find_cycle",
    "is_finished",
    "next_actions",
    "parse_dependency_type",
    "run_state",
    "spell_cycle",
    "topological_order",
]


# ----------------------------------------------------------------------------- edges


class EdgeKind(StrEnum):
    """What an edge means beyond ordering; the values are the API's ``dependency_type``."""

    DATA = "data"  # the child receives the parent's output
    ORDER_ONLY = "order-only"  # the child only runs after the parent


_KIND_ALIASES: Mapping[str, EdgeKind] = MappingProxyType(
    {"order_only": EdgeKind.ORDER_ONLY, "orderonly": EdgeKind.ORDER_ONLY}
)


def parse_dependency_type(value: str) -> EdgeKind:
    """The edge kind named by ``value``, also accepting ``order_only`` as humans write it."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _KIND_ALIASES:
            return _KIND_ALIASES[key]
        try:
            return EdgeKind(key)
        except ValueError:
            pass
    choices = ", ".join(k.value for k in EdgeKind)
    raise ValueError(f"dependency_type: must be one of {choices}, got {value!r}")


def _node_id(field: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: must be a non-empty node id string, got {value!r}")
    return value


@dataclass(frozen=True)
class Edge:
    """``child`` depends on ``parent``; ``kind`` says whether it also receives its output."""

    parent: str
    child: str
    kind: EdgeKind = EdgeKind.DATA

    def __post_init__(self) -> None:
        _node_id("parent", self.parent)
        _node_id("child", self.child)
        object.__setattr__(self, "kind", parse_dependency_type(self.kind))


EdgeLike = Edge | tuple[str, str]
"""An ``Edge`` or a plain ``(parent, child)`` pair, for callers that only need the order."""


def _pair(edge: EdgeLike) -> tuple[str, str]:
    if isinstance(edge, Edge):
        return edge.parent, edge.child
    if isinstance(edge, tuple) and len(edge) == 2:
        return _node_id("edges: parent", edge[0]), _node_id("edges: child", edge[1])
    raise ValueError(f"edges: expected an Edge or a (parent, child) pair, got {edge!r}")


def _adjacency(edges: Iterable[EdgeLike]) -> dict[str, set[str]]:
    children: dict[str, set[str]] = {}
    for edge in edges:
        parent, child = _pair(edge)
        children.setdefault(parent, set()).add(child)
    return children


# ----------------------------------------------------------------------------- cycles


class CycleError(ValueError):
    """Edges that would make the graph cyclic; ``cycle`` lists it, the message spells it.

    The API answers 409 with the message, which names the field and the whole cycle so the
    person who sent the edges sees which dependency to drop.
    """

    code: ClassVar[str] = "cycle"
    field: ClassVar[str] = "dependencies"

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = list(cycle)
        self.message = f"dependencies: would form a cycle {spell_cycle(self.cycle)}"
        super().__init__(self.message)


_SPELL_HEAD = 20
_SPELL_TAIL = 19


def spell_cycle(cycle: list[str]) -> str:
    """``a → b → c → a``; cycles longer than 40 nodes keep their ends and count the middle.

    A 409 body or a log line with ten thousand node ids helps nobody; ``CycleError.cycle``
    still holds every node.
    """
    if not cycle:
        return ""
    if len(cycle) <= _SPELL_HEAD + _SPELL_TAIL + 1:
        return " → ".join([*cycle, cycle[0]])
    hidden = len(cycle) - _SPELL_HEAD - _SPELL_TAIL
    head = " → ".join(cycle[:_SPELL_HEAD])
    tail = " → ".join([*cycle[-_SPELL_TAIL:], cycle[0]])
    return f"{head} → … {hidden} more … → {tail}"


def _canonical(cycle: list[str]) -> list[str]:
    start = cycle.index(min(cycle))
    return cycle[start:] + cycle[:start]


def _search(children: Mapping[str, set[str]], roots: Iterable[str]) -> list[str] | None:
    """The first cycle reachable from ``roots`` (taken in the given order), or None.

    Iterative three-colour DFS: ``on_path`` is the grey set (with each node's index in
    ``path``), ``done`` the black one. Children are visited in sorted order for determinism.
    """
    done: set[str] = set()
    for root in roots:
        if root in done:
            continue
        path = [root]
        on_path = {root: 0}
        stack = [iter(sorted(children.get(root, ())))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                node = path.pop()
                del on_path[node]
                done.add(node)
                stack.pop()
            elif nxt in on_path:
                return _canonical(path[on_path[nxt] :])
            elif nxt not in done:
                on_path[nxt] = len(path)
                path.append(nxt)
                stack.append(iter(sorted(children.get(nxt, ()))))
    return None


def find_cycle(nodes: Iterable[str], edges: Iterable[EdgeLike]) -> list[str] | None:
    """A cycle ``[a, b, c]`` (meaning ``a → b → c → a``) if the graph has one, else None.

    Edge endpoints missing from ``nodes`` are part of the graph all the same: a cycle is a
    cycle whether or not the caller listed its nodes.
    """
    children = _adjacency(edges)
    roots = {_node_id("nodes", n) for n in nodes} | set(children)
    return _search(children, sorted(roots))


def check_new_edges(existing_edges: Iterable[EdgeLike], new_edges: Iterable[EdgeLike]) -> None:
    """Raise ``CycleError`` if adding ``new_edges`` (all together) to the graph closes a cycle.

    Pass the DAG's own edges for the DAG-local check, or every edge between jobs reachable
    through shared jobs for the global one; the function only sees an edge set. The search
    starts from the new edges' parents, because any new cycle runs through a new edge; a
    pre-existing cycle is reported too if the new edges can reach it.
    """
    new = [_pair(edge) for edge in new_edges]
    children = _adjacency(existing_edges)
    for parent, child in new:
        children.setdefault(parent, set()).add(child)
    cycle = _search(children, sorted({parent for parent, _ in new}))
    if cycle is not None:
        raise CycleError(cycle)


def _graph(
    nodes: Iterable[str], edges: Iterable[EdgeLike]
) -> tuple[list[str], dict[str, set[str]], dict[str, set[str]]]:
    """Sorted node ids, children and parents; edges must stay within ``nodes``."""
    ids = sorted({_node_id("nodes", n) for n in nodes})
    known = set(ids)
    children: dict[str, set[str]] = {n: set() for n in ids}
    parents: dict[str, set[str]] = {n: set() for n in ids}
    for edge in edges:
        parent, child = _pair(edge)
        for end in (parent, child):
            if end not in known:
                raise ValueError(f"edges: {parent} → {child} names {end!r}, which is not a node")
        children[parent].add(child)
        parents[child].add(parent)
    return ids, children, parents


def _kahn(
    ids: list[str], children: Mapping[str, set[str]], parents: Mapping[str, set[str]]
) -> list[str]:
    indegree = {n: len(parents[n]) for n in ids}
    heap = [n for n in ids if indegree[n] == 0]  # ids are sorted, so this is already a heap
    order: list[str] = []
    while heap:
        node = heapq.heappop(heap)
        order.append(node)
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(heap, child)
    if len(order) < len(ids):
        stuck = [n for n in ids if indegree[n] > 0]
        cycle = _search(children, stuck)
        assert cycle is not None  # Kahn stalls only on a cycle
        raise CycleError(cycle)
    return order


def topological_order(nodes: Iterable[str], edges: Iterable[EdgeLike]) -> list[str]:
    """Every node after all of its parents; among nodes free at once, the smallest id first.

    Raises ``CycleError`` (naming a cycle) if there is no such order, and ``ValueError`` if an
    edge names a node that is not in ``nodes``.
    """
    ids, children, parents = _graph(nodes, edges)
    return _kahn(ids, children, parents)


def descendants(node: str, edges: Iterable[EdgeLike]) -> list[str]:
    """Every node reachable from ``node`` (not itself unless on a cycle), sorted by id.

    What a manual cancel or retry of one job instance affects.
    """
    children = _adjacency(edges)
    seen: set[str] = set()
    todo = [node]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return sorted(seen)


def data_parents(node: str, edges: Iterable[Edge]) -> list[str]:
    """The parents whose output ``node`` receives (its ``data`` edges), sorted by id."""
    return sorted({e.parent for e in edges if e.child == node and e.kind is EdgeKind.DATA})


# ----------------------------------------------------------------------------- DAG runs


class NodeStatus(StrEnum):
    """Where one node of a DAG run is; the values are what PostgreSQL and the API store.

    ``pending``: waiting for parents. ``waiting``: parents done, waiting out
    ``delay_interval``. ``ready``: chosen to start, not yet dispatched. ``running``: on a
    worker (or between retry attempts). The rest are terminal.
    """

    PENDING = "pending"
    WAITING = "waiting"
    READY = "ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


TERMINAL_NODE_STATES: frozenset[NodeStatus] = frozenset(
    {
        NodeStatus.SUCCEEDED,
        NodeStatus.FAILED,
        NodeStatus.UPSTREAM_FAILED,
        NodeStatus.SKIPPED,
        NodeStatus.CANCELLED,
    }
)
"""States a node never leaves (except through a manual retry, which the caller performs)."""

_NOT_STARTED = frozenset({NodeStatus.PENDING, NodeStatus.WAITING})
_FAILING = frozenset({NodeStatus.FAILED, NodeStatus.UPSTREAM_FAILED})


class DagRunState(StrEnum):
    """The state of a whole DAG run, derived from its nodes by ``run_state``."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _aware(name: str, value: datetime | None) -> None:
    if value is None:
        return
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: must be a timezone-aware datetime, got {value!r}")


@dataclass(frozen=True)
class NodeState:
    """One node of a DAG run as the leader reads it from its row.

    ``parents_done_at`` is when the last parent finished (a root may carry the run's start),
    recorded by the caller when the parent's success is written, so the delay survives a
    failover. ``not_before`` is an extra earliest start, e.g. a retry's back-off.
    """

    node_id: str
    state: NodeStatus = NodeStatus.PENDING
    parents_done_at: datetime | None = None
    delay_interval: float = 0.0
    not_before: datetime | None = None

    def __post_init__(self) -> None:
        _node_id("node_id", self.node_id)
        try:
            object.__setattr__(self, "state", NodeStatus(self.state))
        except ValueError:
            choices = ", ".join(s.value for s in NodeStatus)
            raise ValueError(
                f"state: must be one of {choices}, got {self.state!r} (node {self.node_id})"
            ) from None
        delay = self.delay_interval
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise ValueError(f"delay_interval: must be a number of seconds, got {delay!r}")
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay_interval: must be a finite number >= 0, got {delay!r}")
        object.__setattr__(self, "delay_interval", float(delay))
        _aware("parents_done_at", self.parents_done_at)
        _aware("not_before", self.not_before)


@dataclass(frozen=True)
class ReadyPlan:
    """What the leader does with a DAG run now; every tuple is sorted by node id.

    ``start``: pending/waiting nodes to start now. ``delayed``: nodes whose parents are done
    but whose time has not come (the caller may mark them ``waiting``); ``wake_at`` is the
    earliest of their times, or None. ``upstream_failed``, ``cancel`` and ``skip``: pending or
    waiting nodes to move to that terminal state.
    """

    start: tuple[str, ...] = ()
    delayed: tuple[str, ...] = ()
    wake_at: datetime | None = None
    upstream_failed: tuple[str, ...] = ()
    cancel: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()


def _checked(
    nodes: Mapping[str, NodeState], edges: Iterable[EdgeLike]
) -> tuple[list[str], dict[str, set[str]]]:
    for key, node in nodes.items():
        if not isinstance(node, NodeState):
            raise ValueError(f"nodes: {key!r} must map to a NodeState, got {node!r}")
        if key != node.node_id:
            raise ValueError(f"nodes: key {key!r} holds the state of node {node.node_id!r}")
    ids, children, parents = _graph(nodes, edges)
    return _kahn(ids, children, parents), parents


def _effective(
    nodes: Mapping[str, NodeState], order: list[str], parents: Mapping[str, set[str]]
) -> dict[str, NodeStatus]:
    """Each node's state after rules 1-3 of the module docstring, applied transitively."""
    effective: dict[str, NodeStatus] = {}
    for node_id in order:
        state = nodes[node_id].state
        if state in _NOT_STARTED:
            above = {effective[p] for p in parents[node_id]}
            if above & _FAILING:
                state = NodeStatus.UPSTREAM_FAILED
            elif NodeStatus.CANCELLED in above:
                state = NodeStatus.CANCELLED
            elif NodeStatus.SKIPPED in above:
                state = NodeStatus.SKIPPED
        effective[node_id] = state
    return effective


def next_actions(
    nodes: Mapping[str, NodeState], edges: Iterable[EdgeLike], now: datetime
) -> ReadyPlan:
    """Which nodes to start, to wait for, or to mark blocked; rules in the module docstring.

    ``nodes`` maps every node id of the run to its state; ``edges`` must stay within them.
    Raises ``CycleError`` on a cyclic graph (the insert-time check should make that
    impossible) and ``ValueError`` naming the field for malformed input.
    """
    if now is None:
        raise ValueError("now: must be a timezone-aware datetime, got None")
    _aware("now", now)
    order, parents = _checked(nodes, edges)
    effective = _effective(nodes, order, parents)
    start: list[str] = []
    delayed: list[str] = []
    wake_at: datetime | None = None
    blocked: dict[NodeStatus, list[str]] = {
        NodeStatus.UPSTREAM_FAILED: [],
        NodeStatus.CANCELLED: [],
        NodeStatus.SKIPPED: [],
    }
    for node_id in sorted(nodes):
        node = nodes[node_id]
        if node.state not in _NOT_STARTED:
            continue
        if effective[node_id] in blocked:
            blocked[effective[node_id]].append(node_id)
            continue
        if any(effective[p] is not NodeStatus.SUCCEEDED for p in parents[node_id]):
            continue
        due = _due(node)
        if due is None or due <= now:
            start.append(node_id)
        else:
            delayed.append(node_id)
            wake_at = due if wake_at is None else min(wake_at, due)
    return ReadyPlan(
        start=tuple(start),
        delayed=tuple(delayed),
        wake_at=wake_at,
        upstream_failed=tuple(blocked[NodeStatus.UPSTREAM_FAILED]),
        cancel=tuple(blocked[NodeStatus.CANCELLED]),
        skip=tuple(blocked[NodeStatus.SKIPPED]),
    )


def _due(node: NodeState) -> datetime | None:
    """When a node whose parents all succeeded may start; None means at once."""
    due: datetime | None = None
    if node.delay_interval > 0:
        if node.parents_done_at is None:
            raise ValueError(
                f"parents_done_at: required for node {node.node_id!r} because its "
                f"delay_interval is {node.delay_interval:g}s (stamp the run's start on a root)"
            )
        due = node.parents_done_at + timedelta(seconds=node.delay_interval)
    if node.not_before is not None and (due is None or node.not_before > due):
        due = node.not_before
    return due


def _final_states(
    nodes: Mapping[str, NodeState], edges: Iterable[EdgeLike] | None
) -> Iterable[NodeStatus]:
    if edges is None:
        return [node.state for node in nodes.values()]
    order, parents = _checked(nodes, edges)
    return _effective(nodes, order, parents).values()


def is_finished(nodes: Mapping[str, NodeState], edges: Iterable[EdgeLike] | None = None) -> bool:
    """Whether no node can run any more.

    Without ``edges`` this means every node is terminal; with them, nodes that are blocked
    for good by a failed, cancelled or skipped ancestor count as finished already.
    """
    return all(state in TERMINAL_NODE_STATES for state in _final_states(nodes, edges))


def run_state(
    nodes: Mapping[str, NodeState], edges: Iterable[EdgeLike] | None = None
) -> DagRunState:
    """The DAG run's overall state; see the module docstring for the precedence."""
    states = set(_final_states(nodes, edges))
    if not states <= TERMINAL_NODE_STATES:
        return DagRunState.RUNNING
    if states & _FAILING:
        return DagRunState.FAILED
    if NodeStatus.CANCELLED in states:
        return DagRunState.CANCELLED
    return DagRunState.SUCCEEDED
