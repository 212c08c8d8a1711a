"""Placement honours each worker's command allowlist, deciding exactly as the worker would."""

from __future__ import annotations

import pytest

from common.exec_policy import refusal
from common.placement import (
    RunNeeds,
    WorkerSlot,
    allowed_nowhere,
    command_allowed,
    place,
    placeable,
)

ECHO_ONLY = ("/bin/echo",)


def w(
    worker_id: str,
    allowed: tuple[str, ...] | None = None,
    capacity: int = 4,
    draining: bool = False,
    **labels: str,
) -> WorkerSlot:
    return WorkerSlot(worker_id, f"{worker_id}:1", labels, capacity, draining, allowed)


def cmd(command: str, *args: str, shell: bool = False, **selector: str) -> RunNeeds:
    return RunNeeds(selector=selector, command=command, args=None if shell else tuple(args))


def ids(chosen: list[WorkerSlot | None]) -> list[str | None]:
    return [c.worker_id if c else None for c in chosen]


def test_a_strict_worker_is_skipped_for_a_command_outside_its_list() -> None:
    # "a" is idle and would win on load; it may not run /bin/date.
    chosen = place([cmd("/bin/date", "-u")], [w("a", ECHO_ONLY), w("b")], {"b": 3})
    assert ids(chosen) == ["b"]


def test_an_allowed_command_may_land_on_the_strict_worker_too() -> None:
    chosen = place([cmd("/bin/echo", "hi")] * 2, [w("a", ECHO_ONLY), w("b")], {})
    assert ids(chosen) == ["a", "b"]  # least loaded, then spread: both workers take echo


def test_unrestricted_workers_take_everything_and_runs_without_a_command_check_too() -> None:
    chosen = place([cmd("rm -rf /tmp/x", shell=True), {}], [w("a")], {})
    assert ids(chosen) == ["a", "a"]


def test_a_chained_shell_command_is_refused_under_an_allowlist_despite_its_first_word() -> None:
    echo = ("echo",)
    assert ids(place([cmd("echo hi", shell=True)], [w("a", echo)], {})) == ["a"]
    assert ids(place([cmd("echo hi; id", shell=True)], [w("a", echo)], {})) == [None]
    assert ids(place([cmd("echo hi && id", shell=True)], [w("a", echo), w("b")], {})) == ["b"]


def test_nobody_allowed_means_no_worker_and_the_run_is_flagged() -> None:
    workers = [w("a", ECHO_ONLY), w("b", ("/usr/bin/*",))]
    run = cmd("/bin/date", "-u")
    assert place([run], workers, {}) == [None]
    assert allowed_nowhere(run, workers)


def test_allowed_nowhere_is_not_claimed_when_the_labels_are_what_is_missing() -> None:
    workers = [w("a", ECHO_ONLY, region="eu"), w("b", draining=True, region="us")]
    assert not allowed_nowhere(cmd("/bin/date", "-u", region="us"), workers)  # only draining
    assert not allowed_nowhere(cmd("/bin/date", "-u", gpu="yes"), workers)  # no label match
    assert not allowed_nowhere(cmd("/bin/date", "-u"), [])  # no live worker at all
    assert allowed_nowhere(cmd("/bin/date", "-u", region="eu"), workers)
    assert not allowed_nowhere(cmd("/bin/echo", "x", region="eu"), workers)


def test_an_http_run_is_not_a_command_and_any_worker_may_send_it() -> None:
    # The worker checks its allowlist only for cmd tasks; an http task starts no process.
    http = RunNeeds(kind="http", command="")
    assert ids(place([http], [w("a", ECHO_ONLY)], {})) == ["a"]
    assert ids(place([http], [w("a", ())], {})) == ["a"]
    assert not allowed_nowhere(http, [w("a", ECHO_ONLY)])


def test_labels_and_capacity_still_apply_to_allowed_workers() -> None:
    workers = [w("a", ECHO_ONLY, capacity=1, pool="x"), w("b", pool="y")]
    runs = [cmd("/bin/echo", "1", pool="x"), cmd("/bin/echo", "2", pool="x")]
    assert ids(place(runs, workers, {})) == ["a", None]


def test_placement_is_deterministic() -> None:
    workers = [w("c"), w("a", ECHO_ONLY), w("b", ("echo", "/bin/*"))]
    runs = [cmd("/bin/echo", "x"), cmd("/bin/date"), cmd("echo x", shell=True), cmd("/bin/ls")]
    first = ids(place(runs, workers, {"c": 1}))
    assert first == ids(place(runs, list(reversed(workers)), {"c": 1}))
    assert first == ["a", "b", "b", "c"]


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("/bin/echo", ("x",)),
        ("/bin/date", ()),
        ("echo hi", None),
        ("echo hi | sh", None),
        ("/bin/../tmp/x", ()),
        ("'unbalanced", None),
        ("", None),
        ("$(id)", None),
    ],
)
@pytest.mark.parametrize("patterns", [ECHO_ONLY, ("echo",), ("/bin/*",), ("*",)])
def test_the_leader_decides_exactly_as_the_worker(
    command: str, args: tuple[str, ...] | None, patterns: tuple[str, ...]
) -> None:
    """Same function, same inputs: placement can never send a run the worker refuses."""
    worker_accepts = refusal(patterns, command, args) is None
    assert command_allowed(RunNeeds(command=command, args=args), patterns) == worker_accepts


def test_placeable_ignores_load_but_not_labels_allowlists_or_draining() -> None:
    strict = WorkerSlot("w1", "a:1", {"pool": "a"}, 1, allowed_commands=("/bin/echo",))
    draining = WorkerSlot("w2", "a:2", {"pool": "b"}, 1, draining=True)
    echo = RunNeeds(selector={"pool": "a"}, command="/bin/echo", args=())
    assert placeable(echo, [strict])  # even when w1 is full: it can take it once it has room
    assert not placeable(RunNeeds(selector={"pool": "a"}, command="/bin/date", args=()), [strict])
    assert not placeable(RunNeeds(selector={"pool": "b"}, command="true"), [strict, draining])
    assert not placeable({"pool": "c"}, [strict, draining])
    assert placeable({}, [strict])
