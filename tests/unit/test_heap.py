from datetime import UTC, datetime, timedelta

from controller.leader.heap import HeapJob, ScheduleHeap

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(job_id: int, seconds: int) -> HeapJob:
    return HeapJob(job_id, "@every 1s", "UTC", T0 + timedelta(seconds=seconds), 60)


def test_pop_due_returns_only_due_jobs_in_time_order() -> None:
    heap = ScheduleHeap()
    for job_id, at in ((1, 5), (2, 1), (3, 3)):
        heap.upsert(job(job_id, at))
    assert [j.job_id for j in heap.pop_due(T0 + timedelta(seconds=3))] == [2, 3]
    assert heap.next_due() == (T0 + timedelta(seconds=5)).timestamp()
    assert len(heap) == 1


def test_replaced_and_removed_jobs_leave_no_ghost_entries() -> None:
    heap = ScheduleHeap()
    heap.upsert(job(1, 1))
    heap.upsert(job(1, 10))  # edited: moved later
    heap.upsert(job(2, 2))
    heap.remove(2)
    assert heap.pop_due(T0 + timedelta(seconds=5)) == []
    assert [j.job_id for j in heap.pop_due(T0 + timedelta(seconds=10))] == [1]
    assert heap.next_due() is None
