"""A network partition: the leader loses its peers but still reaches PostgreSQL and workers.

Topology. Every controller advertises the address of its own TCP proxy (``tcp_proxy``) as
its Raft address and listens behind it (``CHRONORAFT_RAFT_BIND``), so all Raft traffic
flows through proxies that run inside this test. PySyncObj keeps one connection per pair of
nodes; the node whose address sorts higher opens it, to the other's *advertised* address,
and its first (encrypted) message names the caller by its advertised address, which the
callee looks up in its peer list; an unknown name is disconnected. So the link between X
and Y passes through exactly one proxy: the one in front of whichever of them sorts lower.

Isolating X therefore takes two cuts: X's own proxy refuses everything (every link in which
X is dialled), and every other proxy refuses connections opened by X's process (every link
in which X dials). A proxy tells who dialled from the kernel's socket table (the client end
of the connection is an fd of exactly one controller process) and fails closed when it
cannot tell. Existing connections are cut at once, new ones are reset as soon as they are
accepted. With both cuts no byte moves between X and any peer in either direction. The test
checks that empirically: X reports no connected peer and its Raft term stands still
(PySyncObj starts no election while connected to no one), the others report X gone and
elect among themselves. Workers and PostgreSQL are not behind the proxies: the isolated
leader can still try to write and dispatch, which is what epoch fencing must stop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from common.settings import Settings
from controller.local_cluster import LocalCluster, http_json
from tests.cluster.ledger import assert_every_slot_once, create_ledger_job, settle
from tests.cluster.tcp_proxy import ProxyNetwork
from tests.conftest import _dump_logs, build_cluster
from tests.helpers import all_runs, wait_until

pytestmark = pytest.mark.cluster

CONTROLLERS = ("c1", "c2", "c3")
FALLBACK_S = Settings().raft_leader_fallback_timeout
# Raft makes the isolated leader step down FALLBACK_S after it last heard from a majority
# (at the latest, the moment of isolation); the leadership manager notices within one
# 20 ms poll. The rest is room for a busy 2-core machine. PySyncObj's default fallback
# (30 s) would fail this bound.
STEP_DOWN_LIMIT_S = FALLBACK_S + 3.8
PARTITION_S = 6.0  # how long the partition lasts at least


@pytest.fixture
def proxied_cluster(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[tuple[LocalCluster, ProxyNetwork]]:
    """A cluster whose controllers talk Raft only through this test's proxies."""
    network = ProxyNetwork(CONTROLLERS)
    cluster = build_cluster(tmp_path / "cluster", database_url, raft_proxy_ports=network.ports)
    try:
        network.start(
            {name: cluster.raft_bind_port(name) for name in CONTROLLERS},
            lambda: {name: cluster.nodes[name].pid for name in CONTROLLERS},
        )
        cluster.start_all()
        cluster.wait_ready(timeout=90)
        yield cluster, network
    finally:
        cluster.stop_all()
        network.close()
        _dump_logs(cluster, request.node.name)


def _node(cluster: LocalCluster, name: str) -> dict[str, Any]:
    return cluster.cluster_info(name, timeout=2.0) or {}


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _fenced_total(cluster: LocalCluster, name: str) -> float:
    status, text = http_json("GET", cluster.url(name) + "/metrics")
    for line in str(text).splitlines() if status == 200 else []:
        if line.startswith("chronoraft_fenced_total "):
            return float(line.split()[1])
    return 0.0


def test_isolated_leader_stops_dispatching_is_replaced_and_rejoins_as_follower(
    proxied_cluster: tuple[LocalCluster, ProxyNetwork], tmp_path: Path
) -> None:
    cluster, network = proxied_cluster
    old = cluster.leader()
    assert old
    old_epoch = _node(cluster, old)["node"]["leading_epoch"]
    majority = [n for n in CONTROLLERS if n != old]
    base = cluster.url(majority[0])
    ledger = tmp_path / "ledger.txt"
    job = create_ledger_job(base, ledger)
    wait_until(
        "the old leader to dispatch runs that succeed",
        lambda: (
            sum(
                r["state"] == "succeeded" and r["epoch"] == old_epoch
                for r in all_runs(base, job["id"])
            )
            >= 3
        ),
        timeout=30,
    )

    network.isolate(old)
    isolated_at = time.time()

    def successor() -> str | None:
        for name in majority:
            node = _node(cluster, name).get("node", {})
            if node.get("role") == "leader" and (node.get("leading_epoch") or 0) > old_epoch:
                return name
        return None

    new = wait_until("a new leader in the majority", successor, timeout=30, interval=0.05)
    elected_in = time.time() - isolated_at
    new_epoch = _node(cluster, new)["node"]["leading_epoch"]
    assert new_epoch > old_epoch

    def old_stepped_down() -> bool:
        info = _node(cluster, old)
        return bool(info) and info["node"]["role"] != "leader" and not info["node"]["leading_epoch"]

    wait_until("the isolated leader to step down", old_stepped_down, timeout=30, interval=0.05)
    stepped_down_at = time.time()
    assert stepped_down_at - isolated_at < STEP_DOWN_LIMIT_S, (
        f"the isolated leader kept leading {stepped_down_at - isolated_at:.1f}s"
    )

    def new_leader_dispatched() -> bool:
        return any(
            r["epoch"] == new_epoch and r["state"] == "succeeded" for r in all_runs(base, job["id"])
        )

    wait_until("a run dispatched by the new leader to succeed", new_leader_dispatched, 30)

    # The partition holds for all its duration: the isolated node sees no peer and its term
    # does not move; the majority sees it gone and each other connected. (A view that does
    # not answer in time on a busy machine is skipped, not counted.)
    old_address = cluster.raft_address(old)
    looks = 0
    while time.time() - isolated_at < PARTITION_S or looks < 3:
        assert time.time() - isolated_at < 60, f"only {looks} complete looks at the partition"
        info = _node(cluster, old)
        views = [_node(cluster, name) for name in majority]
        if info and all(views):
            looks += 1
            assert not any(p["connected"] for p in info["peers"]), info["peers"]
            assert info["raft"]["term"] == old_epoch and not info["node"]["leading_epoch"]
            for view in views:
                peers = {p["raft"]: p["connected"] for p in view["peers"]}
                assert peers[old_address] is False, (view["node"]["id"], peers)
                assert all(ok for a, ok in peers.items() if a != old_address), peers
        time.sleep(0.25)
    stats = network.stats()

    network.heal()
    healed_at = time.time()

    def rejoined() -> bool:
        info = _node(cluster, old)
        return (
            bool(info)
            and info["node"]["role"] == "follower"
            and not info["node"]["leading_epoch"]
            and info["raft"]["leader"] == cluster.raft_address(new)
            and info["raft"]["term"] >= new_epoch
            and all(p["connected"] for p in info["peers"])
        )

    wait_until("the old leader to rejoin as a follower", rejoined, timeout=30)
    rejoined_in = time.time() - healed_at
    wait_until(
        "a slot after the heal to succeed",
        lambda: any(
            r["state"] == "succeeded" and _stamp(r["scheduled_for"]) > healed_at + 1
            for r in all_runs(base, job["id"])
        ),
        timeout=30,
    )

    runs = settle(cluster, job["id"])
    assert_every_slot_once(runs, ledger)
    dispatched = [(r["epoch"], _stamp(r["dispatched_at"])) for r in runs if r["dispatched_at"]]
    by_old = [at for epoch, at in dispatched if epoch == old_epoch]
    by_newer = [at for epoch, at in dispatched if epoch is not None and epoch > old_epoch]
    assert by_old and by_newer
    # Fencing: an old-epoch transaction commits before the successor's claim (the claim waits
    # on its FOR SHARE lock, or the transaction sees the new epoch and aborts), and every
    # new-epoch dispatch starts after that claim. dispatched_at is the transaction's start.
    assert max(by_old) < min(by_newer), "the old leader dispatched after its successor"
    # The old leader stops by itself too: nothing after the moment it reported stepping down.
    late = [at - isolated_at for at in by_old if at >= stepped_down_at]
    assert not late, f"old-epoch dispatches after the step-down (s after isolation): {late}"

    fenced = _fenced_total(cluster, old)
    print(
        f"\npartition: isolated leader {old} (epoch {old_epoch}); new leader {new} "
        f"(epoch {new_epoch}) {elected_in:.2f}s after isolation; old leader seen stepping "
        f"down after {stepped_down_at - isolated_at:.2f}s ("
        f"{'fenced by PostgreSQL' if fenced else 'Raft leader fallback'}); last old-epoch "
        f"dispatch {max(by_old) - isolated_at:+.2f}s, first new-epoch dispatch "
        f"{min(by_newer) - isolated_at:+.2f}s; rejoined as follower {rejoined_in:.2f}s after "
        f"heal; proxies {stats}"
    )
