"""Staggered election timeouts: survivors of a killed leader never time out together."""

from __future__ import annotations

import itertools

import pytest

from common.settings import Settings
from controller.raft import TICK_SECONDS, election_window

NODES = ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]


def window(node: str, nodes: list[str], settings: Settings) -> tuple[float, float]:
    peers = [n for n in nodes if n != node]
    return election_window(
        node,
        peers,
        settings.raft_min_timeout,
        settings.raft_max_timeout,
        settings.raft_election_stagger,
    )


def test_nodes_are_ranked_by_address_whatever_order_peers_are_listed_in() -> None:
    assert election_window("b:1", ["c:1", "a:1"], 0.4, 0.5, 0.2) == pytest.approx((0.6, 0.7))
    assert election_window("b:1", ["a:1", "c:1"], 0.4, 0.5, 0.2) == pytest.approx((0.6, 0.7))
    assert election_window("a:1", ["b:1", "c:1"], 0.4, 0.5, 0.2) == (0.4, 0.5)


@pytest.mark.parametrize("survivors", list(itertools.combinations(NODES, 2)))
def test_default_windows_of_any_two_survivors_are_further_apart_than_two_ticks(
    survivors: tuple[str, str],
) -> None:
    """A timeout is noticed up to one tick late; the first survivor's request must still
    arrive before the second survivor's earliest timeout."""
    settings = Settings()
    first, second = sorted(window(n, NODES, settings) for n in survivors)
    assert second[0] - first[1] > 2 * TICK_SECONDS


def test_default_windows_stay_within_the_failover_target_for_the_slowest_survivor() -> None:
    """The second-ranked node is the slowest that can win while a majority lives."""
    settings = Settings()
    assert window(NODES[1], NODES, settings)[1] + TICK_SECONDS <= 0.75
