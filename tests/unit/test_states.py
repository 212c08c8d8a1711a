import itertools

import pytest

from common.states import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    InvalidTransition,
    OverlapPolicy,
    RunState,
    can_transition,
    check_transition,
    manual_target,
    parse_overlap,
)

S = RunState

ALLOWED = {
    (S.WAITING, S.PENDING),
    (S.WAITING, S.UPSTREAM_FAILED),
    (S.WAITING, S.CANCELLED),
    (S.WAITING, S.SKIPPED),
    (S.PENDING, S.DISPATCHED),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.SKIPPED),
    (S.DISPATCHED, S.RUNNING),
    (S.DISPATCHED, S.PENDING),
    (S.DISPATCHED, S.SUCCEEDED),
    (S.DISPATCHED, S.FAILED),
    (S.DISPATCHED, S.TIMED_OUT),
    (S.DISPATCHED, S.CANCELLED),
    (S.RUNNING, S.PENDING),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.TIMED_OUT),
    (S.RUNNING, S.CANCELLED),
}


def test_state_values_are_the_stored_strings() -> None:
    assert [s.value for s in RunState] == [
        "waiting",
        "pending",
        "dispatched",
        "running",
        "succeeded",
        "failed",
        "timed_out",
        "cancelled",
        "skipped",
        "upstream_failed",
    ]
    assert RunState("timed_out") is S.TIMED_OUT
    assert S.RUNNING == "running"


def test_terminal_and_active_sets() -> None:
    assert TERMINAL == {
        S.SUCCEEDED,
        S.FAILED,
        S.TIMED_OUT,
        S.CANCELLED,
        S.SKIPPED,
        S.UPSTREAM_FAILED,
    }
    assert ACTIVE == {S.DISPATCHED, S.RUNNING}
    assert not TERMINAL & ACTIVE
    assert TERMINAL | ACTIVE | {S.PENDING, S.WAITING} == set(RunState)


def test_every_state_has_a_row_in_the_table() -> None:
    assert set(TRANSITIONS) == set(RunState)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(RunState, RunState)))
def test_transition_table_is_exactly_the_specified_one(current: S, target: S) -> None:
    assert can_transition(current, target) is ((current, target) in ALLOWED)
    assert (target in TRANSITIONS[current]) is ((current, target) in ALLOWED)


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_a_finished_run_can_never_be_reopened(state: S) -> None:
    assert TRANSITIONS[state] == frozenset()
    for target in RunState:
        with pytest.raises(InvalidTransition):
            check_transition(state, target)


def test_a_retry_or_requeue_goes_back_to_pending_before_the_run_finishes() -> None:
    assert can_transition(S.RUNNING, S.PENDING)
    assert can_transition(S.DISPATCHED, S.PENDING)
    assert not can_transition(S.FAILED, S.PENDING)


def test_staying_in_the_same_state_is_not_a_transition() -> None:
    for state in RunState:
        assert not can_transition(state, state)


def test_transition_table_cannot_be_modified() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[S.SUCCEEDED] = frozenset({S.PENDING})  # type: ignore[index]


def test_plain_strings_are_accepted_and_unknown_names_are_not_allowed() -> None:
    assert can_transition("pending", "dispatched")
    assert not can_transition("pending", "exploded")
    assert not can_transition("bogus", "pending")
    with pytest.raises(InvalidTransition):
        check_transition("bogus", "pending")


def test_check_transition_passes_silently_when_allowed() -> None:
    assert check_transition(S.PENDING, S.DISPATCHED) is None


def test_invalid_transition_has_a_stable_code_and_says_what_was_attempted() -> None:
    with pytest.raises(InvalidTransition) as err:
        check_transition(S.SUCCEEDED, S.RUNNING)
    assert err.value.code == "invalid_transition"
    assert str(err.value) == "invalid transition: succeeded -> running"
    assert err.value.current == S.SUCCEEDED
    assert err.value.target == S.RUNNING


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("allow", OverlapPolicy.ALLOW),
        ("skip", OverlapPolicy.SKIP),
        ("buffer_one", OverlapPolicy.BUFFER_ONE),
        ("buffer_all", OverlapPolicy.BUFFER_ALL),
        ("cancel_other", OverlapPolicy.CANCEL_OTHER),
        ("forbid", OverlapPolicy.SKIP),
        ("replace", OverlapPolicy.CANCEL_OTHER),
        ("Forbid", OverlapPolicy.SKIP),
        (" ALLOW ", OverlapPolicy.ALLOW),
    ],
)
def test_overlap_policies_and_kubernetes_aliases(text: str, policy: OverlapPolicy) -> None:
    assert parse_overlap(text) is policy


@pytest.mark.parametrize("value", ["", "queue", "buffer-one", "none", None, 1])
def test_unknown_overlap_policy_names_the_field(value: object) -> None:
    with pytest.raises(ValueError, match=r"^overlap: must be one of allow, skip, buffer_one, "):
        parse_overlap(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "current", "target"),
    [
        ("complete", S.WAITING, S.SUCCEEDED),
        ("complete", S.RUNNING, S.SUCCEEDED),
        ("complete", S.FAILED, S.SUCCEEDED),
        ("complete", S.UPSTREAM_FAILED, S.SUCCEEDED),
        ("fail", S.PENDING, S.FAILED),
        ("fail", S.RUNNING, S.FAILED),
        ("retry", S.FAILED, S.WAITING),
        ("retry", S.TIMED_OUT, S.WAITING),
        ("retry", S.CANCELLED, S.WAITING),
        ("cancel", S.WAITING, S.CANCELLED),
        ("cancel", S.RUNNING, S.CANCELLED),
    ],
)
def test_manual_actions_lead_where_an_operator_expects(action: str, current: S, target: S) -> None:
    assert manual_target(action, current) is target


@pytest.mark.parametrize(
    ("action", "current"),
    [
        ("complete", S.SUCCEEDED),
        ("complete", S.SKIPPED),
        ("fail", S.SUCCEEDED),
        ("fail", S.FAILED),
        ("retry", S.RUNNING),
        ("retry", S.WAITING),
        ("retry", S.SUCCEEDED),
        ("retry", S.UPSTREAM_FAILED),
        ("cancel", S.SUCCEEDED),
        ("cancel", S.CANCELLED),
        ("complete", "nonsense"),
    ],
)
def test_manual_actions_refuse_states_where_they_make_no_sense(action: str, current: S) -> None:
    with pytest.raises(InvalidTransition):
        manual_target(action, current)
