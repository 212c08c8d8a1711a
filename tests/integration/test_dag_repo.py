"""DAG repositories straight against PostgreSQL: concurrency of edge writers, readiness with
an injected clock, and prune. No cluster: the leader's ``advance`` is called directly.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from common import dag, defspec
from common.repo import dag_runs, dags, definitions, prune


async def _conn(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True)


async def _dag_with_jobs(
    conn: Any, names: list[str], dag_name: str = "g", **delays: float
) -> tuple[int, dict[str, int]]:
    now = datetime.now(UTC)
    group = await dags.create(conn, defspec.validate_dag({"name": dag_name}), now)
    ids: dict[str, int] = {}
    for name in names:
        body: dict[str, Any] = {"name": f"def-{name}", "command": "true"}
        if name in delays:
            body["delay_interval"] = delays[name]
        async with conn.transaction():
            d, _ = await definitions.upsert(conn, defspec.validate_definition(body), now)
        job = await dags.add_job(
            conn, group["id"], defspec.JobPlacement(definition_id=d["id"], name=name)
        )
        ids[name] = int(job["id"])
    return int(group["id"]), ids


def _edge(parent: str, child: str) -> defspec.EdgeRef:
    return defspec.EdgeRef(parent=parent, child=child, kind=dag.EdgeKind.DATA, where="")


async def test_two_clients_cannot_together_close_a_cycle(database_url: str) -> None:
    setup = await _conn(database_url)
    dag_id, _ = await _dag_with_jobs(setup, ["a", "b", "c"])
    await dags.add_edges(setup, dag_id, [_edge("a", "b")])
    first, second = await _conn(database_url), await _conn(database_url)
    # Each edge alone is fine; b → c and c → a together with a → b would be a cycle.
    results = await asyncio.gather(
        dags.add_edges(first, dag_id, [_edge("b", "c")]),
        dags.add_edges(second, dag_id, [_edge("c", "a")]),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, dag.CycleError)]
    assert len(refused) == 1, results
    assert "a → b → c → a" in refused[0].message
    edges = await dags.edges_of(setup, dag_id)
    assert len(edges) == 2
    assert (
        dag.find_cycle([], [(str(e["parent_job_id"]), str(e["child_job_id"])) for e in edges])
        is None
    )
    for conn in (setup, first, second):
        await conn.close()


async def _start(conn: Any, dag_id: int) -> int:
    run, _ = await dag_runs.start(conn, dag_id, None)
    return int(run["id"])


async def _states(conn: Any, run_id: int) -> dict[str, str]:
    return {n["name"]: n["state"] for n in (await dag_runs.get(conn, run_id))["nodes"]}


async def _finish(conn: Any, run_id: int, name: str, state: str, at: datetime) -> None:
    """Play the worker: the node ran and ended at ``at``."""
    node = next(n for n in (await dag_runs.get(conn, run_id))["nodes"] if n["name"] == name)
    await conn.execute(
        "UPDATE runs SET state = %s, finished_at = %s, output = %s WHERE id = %s",
        (state, at, f"out-{name}", node["run_id"]),
    )


async def test_a_diamond_becomes_ready_in_dependency_order(database_url: str) -> None:
    conn = await _conn(database_url)
    dag_id, _ = await _dag_with_jobs(conn, ["a", "b", "c", "d"])
    await dags.add_edges(
        conn, dag_id, [_edge("a", "b"), _edge("a", "c"), _edge("b", "d"), _edge("c", "d")]
    )
    run_id = await _start(conn, dag_id)
    t0 = datetime.now(UTC)
    step = await dag_runs.advance(conn, run_id, t0)
    assert step.promoted == 1
    assert await _states(conn, run_id) == {
        "a": "pending",
        "b": "waiting",
        "c": "waiting",
        "d": "waiting",
    }
    await _finish(conn, run_id, "a", "succeeded", t0)
    await dag_runs.advance(conn, run_id, t0)
    assert await _states(conn, run_id) == {
        "a": "succeeded",
        "b": "pending",
        "c": "pending",
        "d": "waiting",
    }
    await _finish(conn, run_id, "b", "succeeded", t0)
    await dag_runs.advance(conn, run_id, t0)
    assert (await _states(conn, run_id))["d"] == "waiting"  # c is not done yet
    await _finish(conn, run_id, "c", "succeeded", t0)
    await dag_runs.advance(conn, run_id, t0)
    nodes = {n["name"]: n for n in (await dag_runs.get(conn, run_id))["nodes"]}
    assert nodes["d"]["state"] == "pending"
    cur = await conn.execute("SELECT input FROM runs WHERE id = %s", (nodes["d"]["run_id"],))
    assert (await cur.fetchone())["input"] == {"b": "out-b", "c": "out-c"}
    await _finish(conn, run_id, "d", "succeeded", t0)
    assert (await dag_runs.advance(conn, run_id, t0)).finished == "succeeded"
    await conn.close()


async def test_a_delayed_child_is_due_delay_after_its_last_parent(database_url: str) -> None:
    conn = await _conn(database_url)
    dag_id, _ = await _dag_with_jobs(conn, ["p", "q", "child"], child=30.0)
    await dags.add_edges(conn, dag_id, [_edge("p", "child"), _edge("q", "child")])
    run_id = await _start(conn, dag_id)
    t0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    await dag_runs.advance(conn, run_id, t0)
    await _finish(conn, run_id, "p", "succeeded", t0 + timedelta(seconds=5))
    await _finish(conn, run_id, "q", "succeeded", t0 + timedelta(seconds=10))
    await dag_runs.advance(conn, run_id, t0 + timedelta(seconds=11))
    child = next(n for n in (await dag_runs.get(conn, run_id))["nodes"] if n["name"] == "child")
    # Pending, but not before the last parent's finish + 30 s: the dispatcher waits for it.
    assert child["state"] == "pending"
    assert child["not_before"] == t0 + timedelta(seconds=40)
    await conn.close()


async def test_failure_propagates_transitively_and_fails_the_run(database_url: str) -> None:
    conn = await _conn(database_url)
    dag_id, _ = await _dag_with_jobs(conn, ["a", "b", "c", "other"])
    await dags.add_edges(conn, dag_id, [_edge("a", "b"), _edge("b", "c")])
    run_id = await _start(conn, dag_id)
    now = datetime.now(UTC)
    await dag_runs.advance(conn, run_id, now)
    await _finish(conn, run_id, "a", "failed", now)
    await _finish(conn, run_id, "other", "succeeded", now)
    step = await dag_runs.advance(conn, run_id, now)
    assert step.blocked == 2 and step.finished == "failed"
    assert await _states(conn, run_id) == {
        "a": "failed", "b": "upstream_failed", "c": "upstream_failed", "other": "succeeded"
    }  # fmt: skip
    await conn.close()


@pytest.mark.parametrize("action", ["complete", "retry"])
async def test_complete_or_retry_reopens_blocked_descendants(
    database_url: str, action: str
) -> None:
    conn = await _conn(database_url)
    dag_id, ids = await _dag_with_jobs(conn, ["a", "b", "c"])
    await dags.add_edges(conn, dag_id, [_edge("a", "b"), _edge("b", "c")])
    run_id = await _start(conn, dag_id)
    now = datetime.now(UTC)
    await dag_runs.advance(conn, run_id, now)
    await _finish(conn, run_id, "a", "failed", now)
    await dag_runs.advance(conn, run_id, now)
    result = await dag_runs.act_on_node(conn, ids["a"], action, None)
    assert result.dag_run_id == run_id
    states = await _states(conn, run_id)
    assert states["b"] == states["c"] == "waiting"
    assert states["a"] == ("succeeded" if action == "complete" else "waiting")
    assert (await dag_runs.get(conn, run_id))["state"] == "running"
    await conn.close()


async def test_prune_moves_only_deleted_finished_unreferenced_rows(database_url: str) -> None:
    conn = await _conn(database_url)
    kept_id, _ = await _dag_with_jobs(conn, ["k"])
    gone_id, gone_jobs = await _dag_with_jobs(conn, ["x", "y"], dag_name="g2")
    await dags.add_edges(conn, gone_id, [_edge("x", "y")])
    run_id = await _start(conn, gone_id)
    await dags.delete(conn, gone_id)
    assert (await prune.prune(conn))["dags"] == 0  # its run is still running
    now = datetime.now(UTC)
    await dag_runs.advance(conn, run_id, now)
    await _finish(conn, run_id, "x", "succeeded", now)
    await dag_runs.advance(conn, run_id, now)
    await _finish(conn, run_id, "y", "succeeded", now)
    await dag_runs.advance(conn, run_id, now)
    counts = await prune.prune(conn)
    assert counts == {"dependencies": 1, "dag_jobs": 2, "dags": 1, "jobs": 2, "definitions": 0}
    assert (await dags.get(conn, gone_id))["pruned"] is True
    assert (await dags.get(conn, kept_id))["pruned"] is False
    assert (await dag_runs.get(conn, run_id))["nodes"][0]["name"] in ("x", "y")
    cur = await conn.execute(
        "SELECT count(*) AS n FROM jobs WHERE id = ANY(%s)", (list(gone_jobs.values()),)
    )
    assert (await cur.fetchone())["n"] == 0
    assert await prune.prune(conn) == dict.fromkeys(counts, 0)
    await conn.close()
