from common.placement import WorkerSlot, labels_match, place


def w(worker_id: str, capacity: int = 2, **labels: str) -> WorkerSlot:
    return WorkerSlot(worker_id, f"{worker_id}:1", labels, capacity)


def test_labels_must_all_match() -> None:
    assert labels_match({}, {"a": "1"})
    assert labels_match({"a": "1"}, {"a": "1", "b": "2"})
    assert not labels_match({"a": "2"}, {"a": "1"})
    assert not labels_match({"c": "1"}, {"a": "1"})


def test_least_loaded_worker_wins_and_batches_spread() -> None:
    chosen = place([{}, {}, {}, {}], [w("a"), w("b")], {"a": 1})
    assert [c.worker_id if c else None for c in chosen] == ["b", "a", "b", None]


def test_full_draining_excluded_and_unmatched_get_nothing() -> None:
    draining = WorkerSlot("d", "d:1", {}, 5, draining=True)
    chosen = place(
        [{"gpu": "yes"}, {}], [w("a", 1), draining, w("x")], {"a": 1}, excluded=frozenset({"x"})
    )
    assert chosen == [None, None]
