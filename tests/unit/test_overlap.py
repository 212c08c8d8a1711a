from common.overlap import PendingRun, decide
from common.states import OverlapPolicy as P


def runs(*ids: int) -> list[PendingRun]:
    return [PendingRun(i, float(i)) for i in ids]


def test_allow_starts_everything_up_to_max_concurrency() -> None:
    assert decide(P.ALLOW, runs(1, 2, 3), active=0).start == [1, 2, 3]
    d = decide(P.ALLOW, runs(3, 1, 2), active=1, max_concurrency=2)
    assert d.start == [1] and d.wait == [2, 3] and not d.skip


def test_skip_drops_new_slots_while_a_run_is_active() -> None:
    d = decide(P.SKIP, runs(1, 2), active=1)
    assert d.start == [] and [r for r, _ in d.skip] == [1, 2] and d.skipped_by_overlap == 2
    assert all("overlap=skip" in reason for _, reason in d.skip)


def test_skip_with_nothing_active_starts_the_oldest_and_skips_the_rest() -> None:
    d = decide(P.SKIP, runs(2, 1, 3), active=0)
    assert d.start == [1] and [r for r, _ in d.skip] == [2, 3]


def test_buffer_all_queues_and_runs_one_at_a_time_in_slot_order() -> None:
    assert decide(P.BUFFER_ALL, runs(1, 2), active=1).wait == [1, 2]
    d = decide(P.BUFFER_ALL, runs(2, 1, 3), active=0)
    assert d.start == [1] and d.wait == [2, 3] and not d.skip


def test_buffer_one_keeps_only_the_newest_waiting_slot() -> None:
    d = decide(P.BUFFER_ONE, runs(1, 2, 3), active=1)
    assert d.wait == [3] and [r for r, _ in d.skip] == [1, 2] and d.dropped_by_buffer == 2
    d = decide(P.BUFFER_ONE, runs(1, 2, 3), active=0)
    assert d.start == [1] and d.wait == [3] and [r for r, _ in d.skip] == [2]
    d = decide(P.BUFFER_ONE, runs(1), active=0)
    assert d.start == [1] and d.wait == [] and d.skip == []


def test_cancel_other_cancels_active_and_starts_the_newest() -> None:
    d = decide(P.CANCEL_OTHER, runs(1, 2), active=1)
    assert d.cancel_active and d.start == [2] and [r for r, _ in d.skip] == [1]
    d = decide(P.CANCEL_OTHER, runs(5), active=0)
    assert not d.cancel_active and d.start == [5]
