"""Worker results stored as a batch (runs.finish_attempts) straight against PostgreSQL.

The batch must give every result the answer one-result-per-transaction (finish_attempt)
gives it, write them all in ONE transaction with one NOTIFY, and leave nothing behind when
that transaction fails, so the worker's resend applies each result exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from common import defspec
from common.repo import dag_runs, dags, definitions
from common.repo import runs as runs_repo
from common.repo.runs import AttemptResult
from tests.conftest import new_database

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
WORKER = "w-batch"


async def _conn(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True)


async def _job(conn: Any, name: str, max_retries: int = 0, backoff: float = 10.0) -> int:
    cur = await conn.execute(
        "INSERT INTO jobs (name, schedule, command, max_retries, retry_backoff_seconds) "
        "VALUES (%s, '0 3 * * *', 'true', %s, %s) RETURNING id",
        (name, max_retries, backoff),
    )
    return int((await cur.fetchone())["id"])


async def _run(
    conn: Any,
    job_id: int,
    minute: int,
    *,
    state: str = "running",
    attempt: int = 1,
    max_retries: int = 0,
    cancel_requested: bool = False,
) -> int:
    """A run as the leader leaves it once a worker took it (``state`` running)."""
    cur = await conn.execute(
        "INSERT INTO runs (job_id, scheduled_for, trigger, state, attempt, max_retries, "
        "worker_id, epoch, dispatched_at, started_at, cancel_requested) "
        "VALUES (%s, %s, 'schedule', %s, %s, %s, %s, 1, %s, %s, %s) RETURNING id",
        (
            job_id,
            T0 + timedelta(minutes=minute),
            state,
            attempt,
            max_retries,
            WORKER,
            T0,
            T0,
            cancel_requested,
        ),
    )
    run_id = int((await cur.fetchone())["id"])
    await conn.execute(
        "INSERT INTO run_attempts (run_id, attempt, worker_id, epoch, state, dispatched_at) "
        "VALUES (%s, %s, %s, 1, 'running', %s)",
        (run_id, attempt, WORKER, T0),
    )
    return run_id


async def _dag_node(conn: Any) -> tuple[int, int]:
    """A one-node DAG run whose node a worker is running: (dag_run_id, node run id)."""
    group = await dags.create(conn, defspec.validate_dag({"name": "batch-dag"}), T0)
    async with conn.transaction():
        d, _ = await definitions.upsert(
            conn, defspec.validate_definition({"name": "def-node", "command": "true"}), T0
        )
    await dags.add_job(conn, group["id"], defspec.JobPlacement(definition_id=d["id"], name="n"))
    dag_run, _ = await dag_runs.start(conn, int(group["id"]), None)
    await dag_runs.advance(conn, int(dag_run["id"]), T0)
    node = (await dag_runs.get(conn, int(dag_run["id"])))["nodes"][0]
    await conn.execute(
        "UPDATE runs SET state = 'running', worker_id = %s, started_at = %s WHERE id = %s",
        (WORKER, T0, node["run_id"]),
    )
    return int(dag_run["id"]), int(node["run_id"])


def _result(run_id: int, state: str = "succeeded", attempt: int = 1, **kw: Any) -> AttemptResult:
    values: dict[str, Any] = dict(
        run_id=run_id,
        attempt=attempt,
        state=state,
        worker_id=WORKER,
        exit_code=0 if state == "succeeded" else 1,
        output=f"out {run_id}/{attempt}\n",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=1),
    )
    values.update(kw)
    return AttemptResult(**values)


class Mixed:
    """One of each outcome, in one database: the rows and the batch that reports them."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.dag_run_id = 0

    async def build(self, conn: Any) -> Mixed:
        plain = await _job(conn, "plain")
        retried = await _job(conn, "retried", max_retries=2, backoff=30.0)
        self.ids["ok"] = await _run(conn, plain, 1)
        self.ids["final_failure"] = await _run(conn, plain, 2)
        self.ids["retry"] = await _run(conn, retried, 3, max_retries=2)
        self.ids["cancel_asked"] = await _run(
            conn, retried, 4, max_retries=2, cancel_requested=True
        )
        self.ids["done"] = await _run(conn, plain, 5, state="succeeded")
        self.ids["stale"] = await _run(conn, plain, 6, attempt=2, max_retries=1)
        self.ids["twice"] = await _run(conn, plain, 7)
        self.dag_run_id, self.ids["dag_node"] = await _dag_node(conn)
        return self

    def batch(self) -> list[AttemptResult]:
        i = self.ids
        return [
            _result(i["ok"]),
            _result(i["final_failure"], "failed", error="exit status 1"),
            _result(i["retry"], "timed_out", error="timed out after 5s"),
            _result(i["cancel_asked"], "failed"),
            _result(i["done"]),  # the run finished already: a resend
            _result(i["stale"], "failed", attempt=1),  # an older attempt of a retried run
            _result(i["stale"], attempt=2),  # ... and its current attempt, same batch
            _result(i["twice"]),
            _result(i["twice"], "failed"),  # the same attempt twice: the first one counts
            _result(i["dag_node"]),
            _result(999_999),  # no such run (pruned)
        ]

    expected = [
        "recorded",
        "recorded",
        "retrying",
        "recorded",
        "duplicate",
        "duplicate",
        "recorded",
        "recorded",
        "duplicate",
        "recorded",
        "duplicate",
    ]


async def _rows(conn: Any, ids: list[int]) -> dict[str, list[dict[str, Any]]]:
    cur = await conn.execute(
        "SELECT id, state, attempt, worker_id, exit_code, output, error, started_at, "
        "finished_at, not_before > now() AS backing_off, xmin::text AS xid "
        "FROM runs WHERE id = ANY(%s) ORDER BY id",
        (ids,),
    )
    runs = await cur.fetchall()
    cur = await conn.execute(
        "SELECT run_id, attempt, worker_id, state, exit_code, output, error, started_at, "
        "finished_at, xmin::text AS xid FROM run_attempts WHERE run_id = ANY(%s) "
        "ORDER BY run_id, attempt",
        (ids,),
    )
    return {"runs": runs, "attempts": await cur.fetchall()}


async def _listen(url: str) -> tuple[psycopg.AsyncConnection[Any], list[tuple[str, str]]]:
    conn = await _conn(url)
    for channel in ("chronoraft_runs", "chronoraft_dags"):
        await conn.execute(f"LISTEN {channel}")
    return conn, []


async def _drain_notifies(conn: Any, into: list[tuple[str, str]], wait: float = 0.5) -> None:
    async for note in conn.notifies(timeout=wait):
        into.append((note.channel, note.payload))


async def test_a_mixed_batch_is_decided_like_single_results_and_written_in_one_transaction(
    database_url: str,
) -> None:
    conn = await _conn(database_url)
    mixed = await Mixed().build(conn)
    ids = sorted(mixed.ids.values())
    before = await _rows(conn, ids)
    listener, heard = await _listen(database_url)

    async with conn.transaction():
        outcomes = await runs_repo.finish_attempts(conn, mixed.batch(), rand=lambda: 0.5)
    assert outcomes == Mixed.expected

    await _drain_notifies(listener, heard)
    assert heard == [("chronoraft_runs", "results"), ("chronoraft_dags", str(mixed.dag_run_id))]

    after = await _rows(conn, ids)
    runs = {r["id"]: r for r in after["runs"]}
    i = mixed.ids
    assert runs[i["ok"]]["state"] == "succeeded"
    assert runs[i["ok"]]["output"] == f"out {i['ok']}/1\n"
    assert (runs[i["final_failure"]]["state"], runs[i["final_failure"]]["error"]) == (
        "failed",
        "exit status 1",
    )
    retry = runs[i["retry"]]
    assert (retry["state"], retry["attempt"], retry["worker_id"]) == ("pending", 2, None)
    assert retry["backing_off"] and retry["error"] == "timed out after 5s"
    assert runs[i["cancel_asked"]]["state"] == "failed"  # a cancel was asked: no retry
    assert runs[i["done"]] == {r["id"]: r for r in before["runs"]}[i["done"]]  # untouched
    assert (runs[i["stale"]]["state"], runs[i["stale"]]["attempt"]) == ("succeeded", 2)
    assert (runs[i["twice"]]["state"], runs[i["twice"]]["exit_code"]) == ("succeeded", 0)
    assert runs[i["dag_node"]]["state"] == "succeeded"

    changed = [i[k] for k in ("ok", "final_failure", "retry", "cancel_asked", "stale", "twice")]
    changed.append(i["dag_node"])
    attempts = {(a["run_id"], a["attempt"]): a for a in after["attempts"]}
    assert attempts[(i["retry"], 1)]["state"] == "timed_out"
    assert attempts[(i["stale"], 2)]["state"] == "succeeded"
    # One transaction wrote every changed row (PostgreSQL stamps each row version with the
    # id of the transaction that wrote it), and untouched rows kept their old version.
    xids = {runs[r]["xid"] for r in changed}
    xids |= {attempts[(r, 2 if r == i["stale"] else 1)]["xid"] for r in changed}
    assert len(xids) == 1
    await listener.close()
    await conn.close()


def _comparable(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Rows without what differs between two databases by construction (row versions)."""
    return {
        table: [{k: v for k, v in row.items() if k != "xid"} for row in found]
        for table, found in rows.items()
    }


async def test_a_batch_leaves_the_same_rows_as_one_transaction_per_result(
    pg_admin_url: str,
) -> None:
    batched = await _conn(new_database(pg_admin_url))
    single = await _conn(new_database(pg_admin_url))
    one, other = await Mixed().build(batched), await Mixed().build(single)
    assert one.ids == other.ids  # same ids in both databases: rows compare directly
    async with batched.transaction():
        outcomes = await runs_repo.finish_attempts(batched, one.batch(), rand=lambda: 0.5)
    singles = []
    for result in other.batch():
        async with single.transaction():
            singles.append(await runs_repo.finish_attempt(single, result, rand=0.5))
    assert outcomes == singles == Mixed.expected
    ids = sorted(one.ids.values())
    got, want = _comparable(await _rows(batched, ids)), _comparable(await _rows(single, ids))
    assert got == want
    await batched.close()
    await single.close()


async def test_a_failed_batch_stores_nothing_and_its_resend_applies_each_result_once(
    database_url: str,
) -> None:
    conn = await _conn(database_url)
    job = await _job(conn, "flaky-db")
    ids = [await _run(conn, job, minute) for minute in range(5)]
    batch = [_result(run_id) for run_id in ids]
    # PostgreSQL fails the batch half-way through its writes (after the attempts insert).
    await conn.execute(
        "CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'disk full'; END $$"
    )
    await conn.execute(
        "CREATE TRIGGER fail_once BEFORE UPDATE ON runs FOR EACH ROW "
        f"WHEN (OLD.id = {ids[3]}) EXECUTE FUNCTION fail_once()"
    )
    listener, heard = await _listen(database_url)
    with pytest.raises(psycopg.errors.RaiseException):
        async with conn.transaction():
            await runs_repo.finish_attempts(conn, batch)
    cur = await conn.execute("SELECT DISTINCT state FROM runs WHERE id = ANY(%s)", (ids,))
    assert [r["state"] for r in await cur.fetchall()] == ["running"]
    cur = await conn.execute(
        "SELECT DISTINCT state FROM run_attempts WHERE run_id = ANY(%s)", (ids,)
    )
    assert [r["state"] for r in await cur.fetchall()] == ["running"]
    await _drain_notifies(listener, heard, 0.3)
    assert heard == []  # NOTIFY is sent at commit: a rolled-back batch wakes nobody

    await conn.execute("DROP TRIGGER fail_once ON runs")
    async with conn.transaction():
        assert await runs_repo.finish_attempts(conn, batch) == ["recorded"] * 5
    stored = await _rows(conn, ids)
    async with conn.transaction():  # the acknowledgement was lost: the worker sends it again
        assert await runs_repo.finish_attempts(conn, batch) == ["duplicate"] * 5
    assert await _rows(conn, ids) == stored
    cur = await conn.execute(
        "SELECT count(*) AS n FROM run_attempts WHERE run_id = ANY(%s)", (ids,)
    )
    assert (await cur.fetchone())["n"] == 5
    await _drain_notifies(listener, heard, 0.3)
    assert heard == [("chronoraft_runs", "results")]  # only the batch that changed something
    await listener.close()
    await conn.close()


async def test_two_batches_over_the_same_runs_in_opposite_orders_do_not_deadlock(
    database_url: str,
) -> None:
    setup = await _conn(database_url)
    job = await _job(setup, "contended")
    ids = [await _run(setup, job, minute) for minute in range(40)]
    first, second = await _conn(database_url), await _conn(database_url)

    async def store(conn: Any, order: list[int]) -> list[str]:
        async with conn.transaction():
            return await runs_repo.finish_attempts(conn, [_result(r) for r in order])

    outcomes = await asyncio.gather(store(first, ids), store(second, ids[::-1]))
    # Each run is recorded by exactly one of them; the other sees a duplicate.
    assert sorted(outcomes[0] + outcomes[1]) == ["duplicate"] * 40 + ["recorded"] * 40
    for conn in (setup, first, second):
        await conn.close()
