import time
from datetime import UTC, datetime, timedelta

import pytest

from common.dag import (
    CycleError,
    DagRunState,
    Edge,
    EdgeKind,
    NodeState,
    NodeStatus,
    ReadyPlan,
    check_new_edges,
    data_parents,
    descendants,
    find_cycle,
    is_finished,
    next_actions,
    parse_dependency_type,
    run_state,
    spell_cycle,
    topological_order,
)

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
S = NodeStatus


def sec(n: float) -> timedelta:
    return timedelta(seconds=n)


def run(states: dict[str, NodeStatus | NodeState]) -> dict[str, NodeState]:
    """A DAG run from short-hand: a bare status means no delay and no timestamps."""
    return {
        node_id: value if isinstance(value, NodeState) else NodeState(node_id, value)
        for node_id, value in states.items()
    }


DIAMOND = [Edge("a", "b"), Edge("a", "c", EdgeKind.ORDER_ONLY), Edge("b", "d"), Edge("c", "d")]


# ----------------------------------------------------------------------------- edges


def test_edges_default_to_data_and_accept_the_api_spellings() -> None:
    assert Edge("a", "b").kind is EdgeKind.DATA
    assert Edge("a", "b", "order-only").kind is EdgeKind.ORDER_ONLY  # type: ignore[arg-type]
    assert parse_dependency_type(" Order_Only ") is EdgeKind.ORDER_ONLY
    with pytest.raises(ValueError, match=r"^dependency_type: must be one of data, order-only"):
        parse_dependency_type("soft")
    with pytest.raises(ValueError, match=r"^child: must be a non-empty node id"):
        Edge("a", "")


def test_only_data_edges_hand_the_parent_output_to_the_child() -> None:
    assert data_parents("d", DIAMOND) == ["b", "c"]
    assert data_parents("c", DIAMOND) == []  # a → c is order-only


# ----------------------------------------------------------------------------- cycles


def test_acyclic_graph_has_no_cycle() -> None:
    assert find_cycle("abcd", [(e.parent, e.child) for e in DIAMOND]) is None
    assert find_cycle([], []) is None
    check_new_edges(DIAMOND, [Edge("a", "d")])  # a shortcut is not a cycle


def test_self_loop_is_a_cycle() -> None:
    assert find_cycle(["a"], [("a", "a")]) == ["a"]
    with pytest.raises(CycleError) as err:
        check_new_edges([], [("a", "a")])
    assert err.value.cycle == ["a"]
    assert str(err.value) == "dependencies: would form a cycle a → a"
    assert err.value.code == "cycle"
    assert isinstance(err.value, ValueError)


def test_two_cycle_is_refused_naming_both_nodes() -> None:
    with pytest.raises(CycleError, match="a → b → a$") as err:
        check_new_edges([("a", "b")], [("b", "a")])
    assert err.value.cycle == ["a", "b"]


def test_long_cycle_is_spelled_out_from_its_smallest_id() -> None:
    chain = [("n1", "n2"), ("n2", "n3"), ("n3", "n4"), ("n4", "n5")]
    with pytest.raises(CycleError) as err:
        check_new_edges(chain, [("n5", "n1")])
    assert err.value.cycle == ["n1", "n2", "n3", "n4", "n5"]
    assert err.value.message == "dependencies: would form a cycle n1 → n2 → n3 → n4 → n5 → n1"


def test_reported_cycle_is_the_same_whichever_way_the_input_is_ordered() -> None:
    edges = [("c", "a"), ("a", "b"), ("b", "c"), ("x", "y"), ("y", "x")]
    first = find_cycle("xycab", edges)
    assert first == ["a", "b", "c"]  # DFS starts from the smallest id
    assert find_cycle("abcxy", list(reversed(edges))) == first


def test_bulk_edges_that_only_together_close_a_cycle_are_refused() -> None:
    existing = [("a", "b"), ("c", "d")]
    check_new_edges(existing, [("b", "c")])  # each half alone is fine
    check_new_edges(existing, [("d", "a")])
    with pytest.raises(CycleError) as err:
        check_new_edges(existing, [("b", "c"), ("d", "a")])
    assert err.value.cycle == ["a", "b", "c", "d"]


def test_duplicate_edges_are_idempotent() -> None:
    check_new_edges([("a", "b"), ("a", "b")], [("a", "b"), Edge("a", "b", EdgeKind.ORDER_ONLY)])
    assert topological_order("ab", [("a", "b"), ("a", "b")]) == ["a", "b"]


def test_global_check_sees_cycles_through_jobs_shared_between_dags() -> None:
    dag_one = [("extract", "shared"), ("shared", "load")]
    dag_two = [("load", "report")]
    check_new_edges(dag_two, [("report", "extract")])  # DAG-local: fine
    with pytest.raises(CycleError, match="extract → shared → load → report → extract"):
        check_new_edges(dag_one + dag_two, [("report", "extract")])


def test_a_chain_of_ten_thousand_nodes_is_checked_fast_and_without_recursion() -> None:
    n = 10_000
    ids = [f"j{i:05d}" for i in range(n)]
    chain = list(zip(ids, ids[1:], strict=False))
    started = time.perf_counter()
    assert find_cycle(ids, chain) is None
    assert topological_order(reversed(ids), chain) == ids
    check_new_edges(chain, [(ids[0], ids[-1])])
    with pytest.raises(CycleError) as err:
        check_new_edges(chain, [(ids[-1], ids[0])])
    assert time.perf_counter() - started < 2.0
    assert err.value.cycle == ids
    # The message keeps both ends and counts the middle instead of listing 10^4 ids.
    assert err.value.message.startswith("dependencies: would form a cycle j00000 → j00001 → ")
    assert "… 9961 more … → j09981" in err.value.message
    assert err.value.message.endswith("j09999 → j00000")


def test_spelling_short_cycles_lists_every_node() -> None:
    assert spell_cycle(["a", "b", "c"]) == "a → b → c → a"
    forty = [f"n{i:02d}" for i in range(40)]
    assert "…" not in spell_cycle(forty)


# ----------------------------------------------------------------------------- topological order


def test_topological_order_breaks_ties_by_node_id() -> None:
    assert topological_order("dcba", DIAMOND) == ["a", "b", "c", "d"]
    assert topological_order(["z", "y", "x"], []) == ["x", "y", "z"]
    edges = [("b", "a"), ("d", "c")]
    assert topological_order("abcd", edges) == ["b", "a", "d", "c"]


def test_topological_order_refuses_a_cycle_and_names_it() -> None:
    with pytest.raises(CycleError, match="b → c → d → b$") as err:
        topological_order("abcd", [("a", "b"), ("b", "c"), ("c", "d"), ("d", "b")])
    assert err.value.cycle == ["b", "c", "d"]


def test_topological_order_refuses_edges_to_unknown_nodes() -> None:
    with pytest.raises(ValueError, match=r"^edges: a → x names 'x', which is not a node"):
        topological_order("ab", [("a", "x")])


def test_descendants_are_what_a_cancel_or_retry_of_one_node_reaches() -> None:
    assert descendants("a", DIAMOND) == ["b", "c", "d"]
    assert descendants("c", DIAMOND) == ["d"]
    assert descendants("d", DIAMOND) == []


# ----------------------------------------------------------------------------- readiness


def test_diamond_runs_in_dependency_order_step_by_step() -> None:
    states = {n: S.PENDING for n in "abcd"}

    def step(now: datetime) -> ReadyPlan:
        return next_actions(run(states), DIAMOND, now)

    assert step(T0) == ReadyPlan(start=("a",))
    states["a"] = S.RUNNING
    assert step(T0 + sec(1)) == ReadyPlan()  # nothing to do while the root runs
    states["a"] = S.SUCCEEDED
    assert step(T0 + sec(2)).start == ("b", "c")  # both branches at once
    states["b"] = states["c"] = S.RUNNING
    states["b"] = S.SUCCEEDED
    assert step(T0 + sec(3)) == ReadyPlan()  # d still waits for c
    states["c"] = S.SUCCEEDED
    assert step(T0 + sec(4)) == ReadyPlan(start=("d",))
    states["d"] = S.SUCCEEDED
    assert step(T0 + sec(5)) == ReadyPlan()
    assert run_state(run(states), DIAMOND) is DagRunState.SUCCEEDED


def test_order_only_edges_gate_readiness_like_data_edges() -> None:
    nodes = run({"a": S.RUNNING, "b": S.PENDING, "c": S.PENDING, "d": S.PENDING})
    assert next_actions(nodes, DIAMOND, T0) == ReadyPlan()  # c waits for a (order-only)


def delayed_child(delay: float, parents_done_at: datetime | None = T0) -> dict[str, NodeState]:
    return {
        "parent": NodeState("parent", S.SUCCEEDED),
        "child": NodeState("child", S.PENDING, parents_done_at, delay_interval=delay),
    }


def test_delayed_child_waits_until_just_before_the_boundary() -> None:
    plan = next_actions(delayed_child(5), [("parent", "child")], T0 + sec(4.999))
    assert plan == ReadyPlan(delayed=("child",), wake_at=T0 + sec(5))


def test_delayed_child_starts_exactly_at_the_boundary() -> None:
    plan = next_actions(delayed_child(5), [("parent", "child")], T0 + sec(5))
    assert plan == ReadyPlan(start=("child",))
    nodes = delayed_child(5)
    nodes["child"] = NodeState("child", S.WAITING, T0, 5)  # marked waiting meanwhile
    assert next_actions(nodes, [("parent", "child")], T0 + sec(5)).start == ("child",)


def test_delay_counts_from_the_last_parent_not_from_the_first() -> None:
    nodes = {
        "p1": NodeState("p1", S.SUCCEEDED),
        "p2": NodeState("p2", S.RUNNING),
        "child": NodeState("child", S.PENDING, None, delay_interval=10),
    }
    edges = [("p1", "child"), ("p2", "child")]
    assert next_actions(nodes, edges, T0 + sec(60)) == ReadyPlan()
    nodes["p2"] = NodeState("p2", S.SUCCEEDED)
    nodes["child"] = NodeState("child", S.PENDING, T0 + sec(60), delay_interval=10)
    assert next_actions(nodes, edges, T0 + sec(61)).wake_at == T0 + sec(70)


def test_wake_at_is_the_earliest_delayed_node() -> None:
    nodes = {
        "root": NodeState("root", S.SUCCEEDED),
        "slow": NodeState("slow", S.PENDING, T0, delay_interval=10),
        "fast": NodeState("fast", S.PENDING, T0, delay_interval=5),
        "now": NodeState("now", S.PENDING),
    }
    edges = [("root", "slow"), ("root", "fast"), ("root", "now")]
    plan = next_actions(nodes, edges, T0 + sec(1))
    assert plan == ReadyPlan(start=("now",), delayed=("fast", "slow"), wake_at=T0 + sec(5))


def test_not_before_holds_a_node_back_for_its_retry_backoff() -> None:
    nodes = {"a": NodeState("a", S.PENDING, not_before=T0 + sec(30))}
    assert next_actions(nodes, [], T0) == ReadyPlan(delayed=("a",), wake_at=T0 + sec(30))
    assert next_actions(nodes, [], T0 + sec(30)) == ReadyPlan(start=("a",))


def test_a_delay_without_a_reference_time_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^parents_done_at: required for node 'child'"):
        next_actions(delayed_child(5, parents_done_at=None), [("parent", "child")], T0)


def test_upstream_failure_propagates_through_two_levels() -> None:
    edges = [("a", "b"), ("b", "c"), ("a", "x")]
    nodes = run({"a": S.SUCCEEDED, "b": S.FAILED, "c": S.PENDING, "x": S.RUNNING})
    assert next_actions(nodes, edges, T0) == ReadyPlan(upstream_failed=("c",))
    deeper = [("a", "b"), ("b", "c"), ("c", "d"), ("c", "e"), ("a", "z")]
    nodes = run({"a": S.FAILED, "b": S.PENDING, "c": S.PENDING, "d": S.WAITING, "e": S.PENDING})
    nodes["z"] = NodeState("z", S.PENDING)
    assert next_actions(nodes, deeper, T0).upstream_failed == ("b", "c", "d", "e", "z")


def test_upstream_failed_parent_also_blocks_its_children() -> None:
    nodes = run({"a": S.UPSTREAM_FAILED, "b": S.PENDING})
    assert next_actions(nodes, [("a", "b")], T0) == ReadyPlan(upstream_failed=("b",))


def test_failure_wins_over_cancel_and_skip_when_a_node_has_several_blocked_parents() -> None:
    nodes = run({"f": S.FAILED, "c": S.CANCELLED, "s": S.SKIPPED, "x": S.PENDING})
    assert next_actions(nodes, [("f", "x"), ("c", "x"), ("s", "x")], T0).upstream_failed == ("x",)
    nodes = run({"c": S.CANCELLED, "s": S.SKIPPED, "x": S.PENDING, "y": S.PENDING})
    plan = next_actions(nodes, [("c", "x"), ("s", "x"), ("s", "y")], T0)
    assert plan == ReadyPlan(cancel=("x",), skip=("y",))


def test_started_nodes_are_never_moved() -> None:
    nodes = run({"a": S.FAILED, "b": S.RUNNING, "c": S.READY})
    assert next_actions(nodes, [("a", "b"), ("a", "c")], T0) == ReadyPlan()


def test_malformed_input_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^now: must be a timezone-aware datetime"):
        next_actions(run({"a": S.PENDING}), [], datetime(2026, 5, 4))
    with pytest.raises(ValueError, match=r"^nodes: key 'a' holds the state of node 'b'"):
        next_actions({"a": NodeState("b")}, [], T0)
    with pytest.raises(ValueError, match=r"^state: must be one of pending, waiting"):
        NodeState("a", "done")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^delay_interval: must be a finite number >= 0"):
        NodeState("a", delay_interval=-1)
    with pytest.raises(ValueError, match=r"^parents_done_at: must be a timezone-aware"):
        NodeState("a", parents_done_at=datetime(2026, 5, 4))
    assert NodeState("a", "running").state is S.RUNNING  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- overall state


def test_run_succeeds_when_every_node_succeeded_or_was_skipped() -> None:
    nodes = run({"a": S.SUCCEEDED, "b": S.SKIPPED})
    assert run_state(nodes) is DagRunState.SUCCEEDED
    assert is_finished(nodes)
    assert run_state({}) is DagRunState.SUCCEEDED


def test_run_keeps_running_while_an_independent_branch_can_still_run() -> None:
    nodes = run({"a": S.FAILED, "b": S.RUNNING})
    assert run_state(nodes, []) is DagRunState.RUNNING
    assert not is_finished(nodes, [])


def test_run_fails_once_nothing_can_still_run() -> None:
    nodes = run({"a": S.FAILED, "b": S.UPSTREAM_FAILED, "c": S.SUCCEEDED})
    assert run_state(nodes) is DagRunState.FAILED
    assert is_finished(nodes)


def test_run_with_edges_counts_blocked_pending_nodes_as_already_marked() -> None:
    nodes = run({"a": S.FAILED, "b": S.PENDING, "c": S.PENDING})
    edges = [("a", "b"), ("b", "c")]
    assert run_state(nodes) is DagRunState.RUNNING  # without edges it cannot know
    assert run_state(nodes, edges) is DagRunState.FAILED
    assert is_finished(nodes, edges)


def test_cancelled_node_without_failures_makes_the_run_cancelled() -> None:
    nodes = run({"a": S.SUCCEEDED, "b": S.CANCELLED, "c": S.PENDING})
    assert run_state(nodes, [("b", "c")]) is DagRunState.CANCELLED
    assert run_state(run({"a": S.CANCELLED, "b": S.FAILED})) is DagRunState.FAILED
