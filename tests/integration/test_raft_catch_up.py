"""A controller that was down while the others compacted their Raft log catches up after a
restart of the whole cluster (real PySyncObj nodes talking over TCP, in this process).

Found by walking the README on a fresh clone: kill -9 one controller, let the others run
past PySyncObj's log compaction (every 5 minutes), restart ``./dev up``. The Raft journal was
on disk but the compacted log's snapshot only in memory, so after the restart the leader had
nothing to send the node that lagged: it logged "Failed to open file for transmission"
some thousand times a second (511 MB of log in 12 minutes), the lagging node never caught
up, and its elections kept deposing the leader.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pysyncobj import SyncObjConf

import controller.raft as raft
from common.pgserver import free_port
from common.settings import Settings
from controller.raft import RaftNode
from tests.helpers import wait_until

Start = Callable[[list[Settings]], list[RaftNode]]


def _cluster_settings(data_dir: str) -> list[Settings]:
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    return [
        Settings(
            node_id=f"n{i}",
            raft_self=address,
            raft_peers=tuple(a for a in addresses if a != address),
            raft_password="test raft password",
            data_dir=data_dir,
        )
        for i, address in enumerate(addresses)
    ]


def _status(node: RaftNode) -> dict[str, Any]:
    return node._obj.getStatus()  # the log indexes are not part of RaftNode's snapshot


def _leader(nodes: list[RaftNode]) -> RaftNode | None:
    leaders = [n for n in nodes if n.snapshot().role == "leader" and n.snapshot().has_quorum]
    return leaders[0] if len(leaders) == 1 else None


def _all_connected(nodes: list[RaftNode]) -> bool:
    return all(all(n.snapshot().peers.values()) for n in nodes)


@pytest.fixture
def start() -> Iterator[Start]:
    nodes: list[RaftNode] = []

    def started(settings: list[Settings]) -> list[RaftNode]:
        batch = [RaftNode(s) for s in settings]
        nodes.extend(batch)
        return batch

    yield started
    for node in nodes:
        node.close()


@dataclass(frozen=True)
class LeftBehind:
    """Where the first life of the cluster ended."""

    lagging: int
    """Position (in the settings) of the node that was down."""
    lagging_index: int
    """The last log index that node had."""
    term: int
    """The highest term reached."""


def _leave_one_behind_and_compact(nodes: list[RaftNode]) -> LeftBehind:
    """Stop a follower, move the log on without it, compact the others' logs, stop them."""
    leader = wait_until("a leader", lambda: _leader(nodes) if _all_connected(nodes) else None, 20)
    lagging = next(n for n in nodes if n is not leader)
    lagging_index = _status(lagging)["last_applied"]
    lagging.close()
    alive = [n for n in nodes if n is not lagging]
    wait_until(
        "the others to see the node gone",  # else a transfer may pick it and go nowhere
        lambda: all(not n.snapshot().peers[lagging.self_address] for n in alive),
        20,
    )
    # Three leadership changes: each new leader appends an entry the lagging node misses.
    for _ in range(3):
        current = wait_until("a leader of the two", lambda: _leader(alive), 20)
        assert current.transfer_leadership(timeout=5.0) == "sent"
        wait_until(
            "the other node to lead",
            lambda was=current: _leader(alive) not in (None, was),
            20,
        )
    for node in alive:
        node._obj.forceLogCompaction()
    wait_until(
        "both logs compacted past the lagging node",
        lambda: all(_status(n)["log_len"] <= 2 for n in alive),
        20,
    )
    # A compacted log keeps its last two entries: the lagging node needs the snapshot.
    assert all(_status(n)["last_applied"] - 1 > lagging_index + 1 for n in alive)
    term = max(n.snapshot().term for n in alive)
    for node in alive:
        node.close()
    return LeftBehind(nodes.index(lagging), lagging_index, term)


def _assert_all_catch_up(
    nodes: list[RaftNode], before: LeftBehind, caplog: pytest.LogCaptureFixture
) -> None:
    leader = wait_until("a leader after the restart", lambda: _leader(nodes), 20)
    assert leader.snapshot().term > before.term  # the epoch never goes back
    target = _status(leader)["commit_idx"]
    behind = nodes[before.lagging]
    wait_until(
        f"the lagging node to reach index {target}",
        lambda: _status(behind)["last_applied"] >= target,
        20,
    )
    failures = [r for r in caplog.records if r.name.startswith("pysyncobj")]
    assert failures == [], failures[:3]
    term = leader.snapshot().term
    assert _leader(nodes) is leader and leader.snapshot().term == term


def test_a_node_behind_a_compacted_log_catches_up_after_a_full_restart(
    tmp_path: Any, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _cluster_settings(str(tmp_path))
    before = _leave_one_behind_and_compact(start(settings))
    compacted = [s for i, s in enumerate(settings) if i != before.lagging]
    assert all(os.path.exists(tmp_path / s.node_id / "raft.dump") for s in compacted)
    caplog.set_level(logging.ERROR, logger="pysyncobj")
    _assert_all_catch_up(start(settings), before, caplog)


def test_a_log_compacted_by_an_older_version_is_restarted_and_catches_up(
    tmp_path: Any, start: Start, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    """Before 2026-12-05 there was no snapshot file: such journals are repaired at start."""

    def without_snapshot_file(**options: Any) -> SyncObjConf:
        options.pop("fullDumpFile")
        options.pop("tryUseFork")
        return SyncObjConf(**options)

    settings = _cluster_settings(str(tmp_path))
    with monkeypatch.context() as older:
        older.setattr(raft, "SyncObjConf", without_snapshot_file)
        before = _leave_one_behind_and_compact(start(settings))
    assert not any((tmp_path / s.node_id / "raft.dump").exists() for s in settings)
    _restart_expecting_two_repairs(settings, start, before, caplog)


def test_a_snapshot_left_unreadable_by_a_crash_is_dropped_with_its_log(
    tmp_path: Any, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """PySyncObj writes the snapshot without fsync: a crash can leave it empty or cut."""
    settings = _cluster_settings(str(tmp_path))
    before = _leave_one_behind_and_compact(start(settings))
    for i, s in enumerate(settings):
        if i != before.lagging:
            dump = tmp_path / s.node_id / "raft.dump"
            dump.write_bytes(dump.read_bytes()[:20])
    _restart_expecting_two_repairs(settings, start, before, caplog)


def _restart_expecting_two_repairs(
    settings: list[Settings], start: Start, before: LeftBehind, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    restarted = start(settings)
    repaired = [r for r in caplog.records if "without a readable snapshot" in r.message]
    assert len(repaired) == 2  # the two that compacted; the lagging one was never compacted
    caplog.clear()
    _assert_all_catch_up(restarted, before, caplog)
