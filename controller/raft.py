"""Leader election with PySyncObj. Raft elects; it is not the database.

No commands are replicated: all state lives in PostgreSQL. The node's Raft term is the
leadership *epoch* used for fencing, so it must never go backwards across restarts; the
Raft journal file (under ``data_dir``) persists it.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import threading
from dataclasses import dataclass

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
from pysyncobj import pickle as syncobj_pickle
from pysyncobj.journal import FileJournal

from common.logging import ctx
from common.settings import Settings

log = logging.getLogger(__name__)


class RaftConfigError(ValueError):
    """The Raft settings cannot form a cluster (e.g. no password)."""


@dataclass(frozen=True)
class RaftSnapshot:
    """A consistent-enough view of the node's Raft state at one moment."""

    role: str  # "leader" | "follower" | "candidate"
    term: int
    leader: str | None  # Raft address of the leader this node believes in
    has_quorum: bool
    peers: dict[str, bool]  # peer Raft address -> connected


_ROLES = {0: "follower", 1: "candidate", 2: "leader"}

TICK_SECONDS = 0.02
"""PySyncObj's tick (its default is 0.05 s). An expired election timeout is only noticed on a
tick, so the tick is what separates two followers' staggered timeouts in practice (see
:func:`election_window`); it also bounds how old the published snapshot can be."""


def election_window(
    self_address: str, peers: list[str], low: float, high: float, stagger: float
) -> tuple[float, float]:
    """This node's election timeout range: ``[low, high]`` shifted by ``stagger`` per rank.

    With every node drawing from the same range, the two survivors of a killed leader time
    out within one tick of each other now and then (about 1 kill in 30 here), both vote for
    themselves, and a second election round doubles the failover (1.96 s instead of 0.7).
    Ranking the nodes by address and shifting each one's range keeps the ranges apart, so
    the lowest-ranked survivor asks first and its request reaches the others before their
    own timeouts expire: no split vote, and the worst case is one window, not two.
    """
    rank = sorted({self_address, *peers}).index(self_address)
    return low + rank * stagger, high + rank * stagger


def _snapshot_readable(dump_file: str) -> bool:
    """Whether PySyncObj could load ``dump_file`` (gzip of a pickle, as it writes it)."""
    try:
        with open(dump_file, "rb") as f, gzip.GzipFile(fileobj=f) as g:
            syncobj_pickle.load(g)
    except Exception:  # noqa: BLE001 - any failure to read means there is no snapshot
        return False
    return True


def restart_compacted_log(journal_file: str, dump_file: str) -> bool:
    """Empty a Raft log whose start was compacted away with no snapshot to stand for it.

    Versions before the snapshot file (``fullDumpFile``) kept the snapshot in memory only, and
    PySyncObj writes the file without fsync, so a crash can leave it unreadable. Either way
    the log then begins past index 1 with nothing before it: the node can apply nothing,
    never compacts again, and as leader has no snapshot for a node further behind. No
    commands are replicated (the log holds only the no-op each new leader appends), so the
    entries can go, and an unreadable snapshot with them; the term and vote stay in the
    journal's meta file, so the epoch never goes back. The node then catches up like a new
    one. True if it was emptied.
    """
    if not os.path.exists(journal_file):
        return False
    journal = FileJournal(journal_file)
    try:
        if len(journal) == 0 or journal[0][1] <= 1 or _snapshot_readable(dump_file):
            return False
        journal.clear()
        journal.setRaftCommitIndex(1)
        journal.onOneSecondTimer()  # stores the meta (commit index) now
        journal.flush()
    finally:
        journal._destroy()
    with contextlib.suppress(FileNotFoundError):
        os.remove(dump_file)
    return True


class RaftNode:
    """One controller's SyncObj, ticking on its own thread (``autoTick``).

    The asyncio side only reads snapshots; elections never wait on the event loop, so a
    busy loop cannot cause needless elections.
    """

    def __init__(self, settings: Settings) -> None:
        if not settings.raft_password:
            if not settings.insecure_dev:
                raise RaftConfigError(
                    "CHRONORAFT_RAFT_PASSWORD is required: Raft traffic is encrypted and "
                    "authenticated with it"
                )
            log.warning(
                "INSECURE DEV MODE: no Raft password, any process reaching the Raft port "
                "can vote and disturb elections"
            )
        journal_dir = os.path.join(settings.data_dir, settings.node_id)
        os.makedirs(journal_dir, exist_ok=True)
        journal_file = os.path.join(journal_dir, "raft.journal")
        dump_file = os.path.join(journal_dir, "raft.dump")
        low, high = election_window(
            settings.raft_self,
            list(settings.raft_peers),
            settings.raft_min_timeout,
            settings.raft_max_timeout,
            settings.raft_election_stagger,
        )
        conf = SyncObjConf(
            password=settings.raft_password or None,
            autoTick=True,
            autoTickPeriod=TICK_SECONDS,
            raftMinTimeout=low,
            raftMaxTimeout=high,
            appendEntriesPeriod=settings.raft_append_entries_period,
            leaderFallbackTimeout=settings.raft_leader_fallback_timeout,
            # PySyncObj checks this timeout when it *sends*: a link idle longer than this is
            # dropped together with the message being sent. Followers never talk to each other
            # while a leader lives, so a short timeout made the first vote request after every
            # leader loss vanish and cost a second election round. Dead peers are noticed by
            # TCP itself (a killed process resets its sockets) and leadership by response
            # times (leaderFallbackTimeout), so a long timeout loses nothing.
            connectionTimeout=settings.raft_connection_timeout,
            connectionRetryTime=0.5,
            journalFile=journal_file,
            # Log compaction (every 5 minutes) drops the journal's older entries and keeps a
            # snapshot in their place, which the leader sends to a node too far behind for
            # entries. Without this file that snapshot lived only in memory: after a
            # restart of the cluster, the leader had nothing to send a node that was down
            # while the others compacted, the node never caught up, and its elections kept
            # deposing the leader. Written on PySyncObj's tick thread rather than from a
            # forked child (a controller runs gRPC threads): a few hundred bytes, as no
            # commands are replicated.
            fullDumpFile=dump_file,
            tryUseFork=False,
            dynamicMembershipChange=False,
            bindAddress=settings.raft_bind or None,
        )
        if restart_compacted_log(journal_file, dump_file):
            log.warning(
                "Raft log compacted without a readable snapshot (none before 2026-12-05, or "
                "a crash while writing it) starts again empty; its term is kept",
                extra=ctx(journal=journal_file),
            )
        self._peers = list(settings.raft_peers)
        self._latest: RaftSnapshot | None = None
        self._obj = SyncObj(settings.raft_self, self._peers, conf=conf)
        self.self_address = settings.raft_self
        self._obj.addOnTickCallback(self._publish)

    def _read_status(self) -> RaftSnapshot:
        for _ in range(5):
            try:
                status = self._obj.getStatus()
                break
            except RuntimeError:  # "dictionary changed size during iteration"
                continue
        else:
            status = self._obj.getStatus()
        leader = status["leader"]
        prefix = "partner_node_status_server_"
        peers = {k[len(prefix) :]: v == 2 for k, v in status.items() if k.startswith(prefix)}
        return RaftSnapshot(
            role=_ROLES.get(int(status["state"]), "follower"),
            term=int(status["raft_term"]),
            leader=getattr(leader, "address", None) if leader is not None else None,
            has_quorum=bool(status["has_quorum"]),
            peers=peers,
        )

    def _publish(self) -> None:
        """On-tick callback: runs on PySyncObj's own thread between message batches."""
        self._latest = self._read_status()

    def snapshot(self) -> RaftSnapshot:
        """The node's state as of its last tick (at most one tick period old).

        Read from another thread, PySyncObj's status can be torn: a leader being deposed
        sets the new term before it sets its state, so a reader could see "leader of the new
        term" and claim an epoch that belongs to its successor (found by the chaos run).
        The snapshot is therefore taken on the tick thread and only handed over here.
        """
        latest = self._latest
        return latest if latest is not None else self._read_status()

    def transfer_leadership(self, timeout: float = 1.0) -> str:
        """Ask the most caught-up connected follower to start an election now (Raft
        ``TimeoutNow``), so a leader that is shutting down costs no election timeout.

        PySyncObj's state is owned by its tick thread, so the request runs there (an on-tick
        callback) and this call blocks until it was made. Returns ``"sent"`` or why not:
        ``"unsupported"`` (PySyncObj without transfer), ``"not_leader"``, ``"denied"`` (no
        connected follower is fully caught up) or ``"timeout"``. ``"sent"`` does not mean
        done: watch :meth:`snapshot` for the new leader.
        """
        if not hasattr(self._obj, "transferLeadership"):
            return "unsupported"
        outcome: list[str] = []
        made = threading.Event()
        reasons = {
            FAIL_REASON.SUCCESS: "sent",
            FAIL_REASON.NOT_LEADER: "not_leader",
            FAIL_REASON.REQUEST_DENIED: "denied",
        }

        def on_result(_result: object, error: int) -> None:
            outcome.append(reasons.get(error, f"failed ({error})"))

        def on_tick() -> None:
            if made.is_set():
                return
            try:
                self._obj.transferLeadership(callback=on_result)
            except Exception as exc:  # noqa: BLE001 - reported, then we fall back
                outcome.append(f"error ({exc!r})")
            made.set()

        self._obj.addOnTickCallback(on_tick)
        try:
            if not made.wait(timeout):
                return "timeout"
        finally:
            self._obj.removeOnTickCallback(on_tick)
        return outcome[0] if outcome else "sent"

    def close(self) -> None:
        try:
            self._obj.destroy()
        except Exception:  # noqa: BLE001 - shutting down anyway
            log.exception("raft destroy failed")
