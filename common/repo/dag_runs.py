"""DAG runs: one row per run of a DAG, one ordinary run row per node.

Nodes start ``waiting``; the leader (``advance``) moves them to ``pending`` when their
parents are done (after ``delay_interval``), or to ``upstream_failed`` / ``cancelled`` /
``skipped`` when a parent ends that way, and finishes the DAG run when nothing can run any
more. From ``pending`` on, a node is dispatched, retried and reaped exactly like a cron run.
Every writer locks the DAG run row first, so the leader and an operator's manual action
never interleave on one DAG run.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from common import dag
from common.db import q
from common.defspec import Workflow
from common.errors import Conflict, NotFound
from common.repo import dags as dags_repo
from common.repo import namespaces
from common.repo.paging import count_to, split_counted_total
from common.states import InvalidTransition, RunState, manual_target

JSON_COLUMNS = ("args", "env", "secret_env", "http")

# How a node's run state reads to the pure DAG logic in common/dag.py.
NODE_STATUS = {
    RunState.WAITING: dag.NodeStatus.PENDING,
    RunState.PENDING: dag.NodeStatus.READY,
    RunState.DISPATCHED: dag.NodeStatus.RUNNING,
    RunState.RUNNING: dag.NodeStatus.RUNNING,
    RunState.SUCCEEDED: dag.NodeStatus.SUCCEEDED,
    RunState.FAILED: dag.NodeStatus.FAILED,
    RunState.TIMED_OUT: dag.NodeStatus.FAILED,
    RunState.CANCELLED: dag.NodeStatus.CANCELLED,
    RunState.SKIPPED: dag.NodeStatus.SKIPPED,
    RunState.UPSTREAM_FAILED: dag.NodeStatus.UPSTREAM_FAILED,
}


def _edges_json(edges: list[dict[str, Any]]) -> list[list[Any]]:
    return [[e["parent_job_id"], e["child_job_id"], e["dependency_type"]] for e in edges]


async def _notify(conn: AsyncConnection[Any], dag_run_id: int) -> None:
    await conn.execute(q("dag_run_notify"), {"id": dag_run_id})


async def _insert_run(
    conn: AsyncConnection[Any],
    *,
    group: dict[str, Any],
    trigger: str,
    key: str | None,
    request_hash: str | None,
    scheduled_for: datetime | None,
    state: str = "running",
    error: str | None = None,
) -> dict[str, Any] | None:
    """The DAG run row and its waiting nodes; None when the slot or key already has a run."""
    edges = await dags_repo.edges_of(conn, group["id"])
    cur = await conn.execute(
        q("dag_run_insert"),
        {
            "dag_id": group["id"],
            "dag_version": group["version"],
            "namespace": group["namespace"],
            "state": state,
            "trigger": trigger,
            "key": key,
            "request_hash": request_hash,
            "scheduled_for": scheduled_for or datetime.now().astimezone(),
            "edges": Jsonb(_edges_json(edges)),
            "error": error,
        },
    )
    row = await cur.fetchone()
    if row is None or state != "running":
        return row
    members = await dags_repo.jobs_of(conn, group["id"])
    await _insert_nodes(conn, row, [int(j["id"]) for j in members], {})
    await _notify(conn, int(row["id"]))
    return row


async def _insert_nodes(
    conn: AsyncConnection[Any],
    run: dict[str, Any],
    job_ids: list[int],
    keyed: dict[int, tuple[str, dict[str, Any] | None]],
) -> None:
    """Node rows; a node whose idempotency key already succeeded reuses that result."""
    states, keys, outputs, codes, reused = [], [], [], [], []
    for job_id in job_ids:
        key, done = keyed.get(job_id, (None, None))
        states.append("succeeded" if done else "waiting")
        keys.append(key)
        outputs.append(done["output"] if done else None)
        codes.append(done["exit_code"] if done else None)
        reused.append(done["id"] if done else None)
    await conn.execute(
        q("dag_run_nodes_insert"),
        {
            "slot": run["scheduled_for"],
            "dag_run_id": run["id"],
            "job_ids": job_ids,
            "states": states,
            "keys": keys,
            "outputs": outputs,
            "exit_codes": codes,
            "reused": reused,
        },
    )


async def start(
    conn: AsyncConnection[Any], dag_id: int, key: str | None
) -> tuple[dict[str, Any], bool]:
    """POST /dags/{id}/runs: (run, created). A known idempotency key returns its run."""
    async with conn.transaction():
        group = await dags_repo.lock(conn, dag_id, shared=True)
        if key is not None:
            await conn.execute(q("xact_lock"), {"key": f"dag-run:{dag_id}:{key}"})
            cur = await conn.execute(q("dag_run_by_key"), {"dag_id": dag_id, "key": key})
            existing = await cur.fetchone()
            if existing is not None:
                return await get(conn, int(existing["id"])), False
        row = await _insert_run(
            conn, group=group, trigger="manual", key=key, request_hash=None, scheduled_for=None
        )
        assert row is not None
        return await get(conn, int(row["id"])), True


async def fire_slot(
    conn: AsyncConnection[Any], dag_id: int, slot: datetime, trigger: str, skip_reason: str | None
) -> bool:
    """The leader's scheduled run for one slot (inside its fenced transaction).

    At most one run per (DAG, slot) whoever tries; a slot outside the catch-up window is
    recorded as a ``skipped`` DAG run with the reason. Returns whether a row was written.
    """
    group = await dags_repo.lock(conn, dag_id, shared=True)
    row = await _insert_run(
        conn,
        group=group,
        trigger=trigger,
        key=None,
        request_hash=None,
        scheduled_for=slot,
        state="skipped" if skip_reason else "running",
        error=skip_reason,
    )
    return row is not None


async def start_workflow(
    conn: AsyncConnection[Any], workflow: Workflow
) -> tuple[dict[str, Any], bool]:
    """POST /workflows: a one-shot DAG built and started in one transaction."""
    async with conn.transaction():
        await namespaces.require(conn, workflow.namespace)
        if workflow.idempotency_key is not None:
            await conn.execute(
                q("xact_lock"), {"key": f"workflow:{workflow.namespace}:{workflow.idempotency_key}"}
            )
            cur = await conn.execute(
                q("workflow_run_by_key"),
                {"namespace": workflow.namespace, "key": workflow.idempotency_key},
            )
            existing = await cur.fetchone()
            if existing is not None:
                if existing["request_hash"] != workflow.request_hash:
                    raise Conflict(
                        f"idempotency_key: {workflow.idempotency_key!r} was used for a different "
                        f"workflow (run {existing['id']})",
                        field="idempotency_key",
                    )
                return await get(conn, int(existing["id"])), False
        keyed = await _reusable_nodes(conn, workflow)
        cur = await conn.execute(
            q("dag_insert"),
            {
                "namespace": workflow.namespace,
                "name": workflow.name or f"workflow-{secrets.token_hex(6)}",
                "description": "one-shot workflow",
                "schedule": None,
                "timezone": "UTC",
                "paused": False,
                "catchup_window_seconds": 60.0,
                "next_fire_at": None,
                "one_shot": True,
            },
        )
        group = await cur.fetchone()
        assert group is not None
        ids: dict[str, int] = {}
        for node in workflow.nodes:
            spec = {
                k: Jsonb(v) if k in JSON_COLUMNS and v is not None else v
                for k, v in node.spec.items()
            }
            cur = await conn.execute(
                q("job_insert_inline"),
                {**spec, "name": node.node_id, "namespace": workflow.namespace},
            )
            job = await cur.fetchone()
            assert job is not None
            ids[node.node_id] = int(job["id"])
            await conn.execute(q("dag_job_attach"), {"dag_id": group["id"], "job_id": job["id"]})
        for edge in workflow.edges():
            await conn.execute(
                q("dependency_insert"),
                {
                    "dag_id": group["id"],
                    "parent_job_id": ids[edge.parent],
                    "child_job_id": ids[edge.child],
                    "dependency_type": edge.kind.value,
                },
            )
        cur = await conn.execute(
            q("dag_run_insert"),
            {
                "dag_id": group["id"],
                "dag_version": group["version"],
                "namespace": workflow.namespace,
                "state": "running",
                "trigger": "workflow",
                "key": workflow.idempotency_key,
                "request_hash": workflow.request_hash,
                "scheduled_for": datetime.now().astimezone(),
                "edges": Jsonb(_edges_json(await dags_repo.edges_of(conn, int(group["id"])))),
                "error": None,
            },
        )
        run = await cur.fetchone()
        assert run is not None
        await _insert_nodes(
            conn,
            run,
            [ids[n.node_id] for n in workflow.nodes],
            {ids[node_id]: found for node_id, found in keyed.items()},
        )
        await _notify(conn, int(run["id"]))
        return await get(conn, int(run["id"])), True


async def _reusable_nodes(
    conn: AsyncConnection[Any], workflow: Workflow
) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """Per keyed node: the earlier successful run to reuse, None to run it, 409 if in flight."""
    found: dict[str, tuple[str, dict[str, Any] | None]] = {}
    keyed = sorted(
        (n.idempotency_key, i, n) for i, n in enumerate(workflow.nodes) if n.idempotency_key
    )
    for key, i, node in keyed:  # sorted: concurrent submissions lock keys in one order
        await conn.execute(q("xact_lock"), {"key": f"node:{workflow.namespace}:{key}"})
        cur = await conn.execute(
            q("run_by_idempotency_key"), {"key": key, "namespace": workflow.namespace}
        )
        earlier = await cur.fetchone()
        state = RunState(earlier["state"]) if earlier else None
        if state in (RunState.WAITING, RunState.PENDING, RunState.DISPATCHED, RunState.RUNNING):
            raise Conflict(
                f"nodes[{i}].idempotency_key: {key!r} belongs to run {earlier['id']}, "
                f"which is still {state.value}",
                field=f"nodes[{i}].idempotency_key",
            )
        found[node.node_id] = (key, earlier if state is RunState.SUCCEEDED else None)
    return found


# ----- reading -----


async def get(conn: AsyncConnection[Any], dag_run_id: int) -> dict[str, Any]:
    cur = await conn.execute(q("dag_run_get"), {"id": dag_run_id})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"DAG run {dag_run_id} not found")
    cur = await conn.execute(q("dag_run_nodes"), {"id": dag_run_id})
    nodes = await cur.fetchall()
    parents: dict[int, list[int]] = {}
    for parent, child, _ in row["edges"]:
        parents.setdefault(int(child), []).append(int(parent))
    for node in nodes:
        node["parents"] = sorted(parents.get(int(node["job_id"]), []))
    row["nodes"] = nodes
    return row


async def list_runs(
    conn: AsyncConnection[Any], dag_id: int, state: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int | None, bool]:
    """Newest first: (page, total, whether the total is exact); see common/repo/paging.py."""
    counted_to = count_to(limit, offset)
    params = {"dag_id": dag_id, "state": state, "limit": limit, "offset": offset}
    cur = await conn.execute(q("dag_runs_list"), params | {"count_to": counted_to})
    return split_counted_total(await cur.fetchall(), counted_to)


# ----- operator actions -----


@dataclass(frozen=True)
class ActionResult:
    dag_run_id: int
    run_id: int
    state: str


async def act_on_node(
    conn: AsyncConnection[Any], job_id: int, action: str, dag_run_id: int | None
) -> ActionResult:
    """complete / fail / retry / cancel one job instance, as a guarded transition.

    Without ``dag_run_id`` the newest DAG run holding the job is meant. A state where the
    action makes no sense is a 409 naming the state.
    """
    async with conn.transaction():
        cur = await conn.execute(
            q("dag_node_for_job"), {"job_id": job_id, "dag_run_id": dag_run_id}
        )
        node = await cur.fetchone()
        if node is None:
            where = f"DAG run {dag_run_id}" if dag_run_id else "any DAG run"
            raise NotFound(f"job {job_id} has no instance in {where}")
        run_id, owner = int(node["id"]), int(node["dag_run_id"])
        cur = await conn.execute(q("dag_run_lock"), {"id": owner})
        group_run = await cur.fetchone()
        assert group_run is not None
        cur = await conn.execute(q("dag_node_lock"), {"id": run_id})
        node = {**node, **(await cur.fetchone() or {})}
        current = RunState(node["state"])
        try:
            target = manual_target(action, current)
        except InvalidTransition:
            raise Conflict(
                f"state: job {job_id} in DAG run {owner} is {current.value}; "
                f"{action} does not apply to a {current.value} job",
                field="state",
            ) from None
        shown = target.value
        if action in ("complete", "fail"):
            await _set_final(conn, node, target, f"{target.value} manually (was {current.value})")
        elif action == "retry":
            await conn.execute(
                q("dag_node_retry"),
                {
                    "id": run_id,
                    "expected": current.value,
                    "job_max_retries": node["job_max_retries"],
                },
            )
        elif current in (RunState.DISPATCHED, RunState.RUNNING):  # cancel an active node
            await conn.execute(q("run_request_cancel"), {"id": run_id})
            await conn.execute(q("runs_notify"), {"reason": "cancel"})
            shown = "cancelling"
        else:
            await _set_final(conn, node, target, "cancelled by request")
        if target in (RunState.SUCCEEDED, RunState.WAITING):
            blocked = dag.descendants(
                str(node["job_id"]), [(str(p), str(c)) for p, c, _ in group_run["edges"]]
            )
            if blocked:
                await conn.execute(
                    q("dag_nodes_reopen"),
                    {"dag_run_id": owner, "job_ids": [int(b) for b in blocked]},
                )
            await conn.execute(q("dag_run_reopen"), {"id": owner})
        await _notify(conn, owner)
        return ActionResult(dag_run_id=owner, run_id=run_id, state=shown)


async def _set_final(
    conn: AsyncConnection[Any], node: dict[str, Any], target: RunState, error: str
) -> None:
    params = {"id": node["id"], "state": target.value, "error": error, "expected": node["state"]}
    await conn.execute(q("dag_node_set_final"), params)
    await conn.execute(q("dag_node_close_attempt"), {**params, "attempt": node["attempt"]})


async def cancel(conn: AsyncConnection[Any], dag_run_id: int) -> dict[str, Any]:
    """Cancel a whole DAG run: waiting nodes at once, active ones asked to stop."""
    async with conn.transaction():
        cur = await conn.execute(q("dag_run_lock"), {"id": dag_run_id})
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"DAG run {dag_run_id} not found")
        if row["state"] != "running":
            raise Conflict(f"state: DAG run {dag_run_id} is already {row['state']}", field="state")
        await conn.execute(
            q("dag_nodes_cancel_waiting"),
            {"dag_run_id": dag_run_id, "error": "DAG run cancelled by request"},
        )
        cur = await conn.execute(q("dag_nodes_cancel_active"), {"dag_run_id": dag_run_id})
        if await cur.fetchall():
            await conn.execute(q("runs_notify"), {"reason": "cancel"})
        await _notify(conn, dag_run_id)
    return await get(conn, dag_run_id)


# ----- leader side -----


async def running_ids(conn: AsyncConnection[Any]) -> list[int]:
    cur = await conn.execute(q("dag_runs_running"))
    return [int(r["id"]) for r in await cur.fetchall()]


@dataclass(frozen=True)
class Advance:
    promoted: int
    blocked: int
    finished: str | None


async def advance(conn: AsyncConnection[Any], dag_run_id: int, now: datetime) -> Advance:
    """Inside the leader's fenced transaction: move one DAG run as far as it can go now."""
    cur = await conn.execute(q("dag_run_lock"), {"id": dag_run_id})
    group_run = await cur.fetchone()
    if group_run is None or group_run["state"] != "running":
        return Advance(0, 0, None)
    cur = await conn.execute(q("dag_run_nodes"), {"id": dag_run_id})
    rows = {str(r["job_id"]): r for r in await cur.fetchall()}
    edges = [
        dag.Edge(str(p), str(c), dag.parse_dependency_type(k)) for p, c, k in group_run["edges"]
    ]
    parents: dict[str, list[str]] = {}
    for edge in edges:
        parents.setdefault(edge.child, []).append(edge.parent)

    def done_at(node_id: str) -> datetime:
        finished = [
            rows[p]["finished_at"] for p in parents.get(node_id, []) if rows[p]["finished_at"]
        ]
        return max(finished) if finished else group_run["created_at"]

    nodes = {
        node_id: dag.NodeState(
            node_id=node_id,
            state=NODE_STATUS[RunState(row["state"])],
            parents_done_at=done_at(node_id),
            delay_interval=float(row["delay_interval_seconds"] or 0),
        )
        for node_id, row in rows.items()
    }
    plan = dag.next_actions(nodes, edges, now)
    ready = [*plan.start, *plan.delayed]
    if ready:
        await conn.execute(
            q("dag_nodes_promote"),
            {
                "ids": [rows[n]["run_id"] for n in ready],
                "not_befores": [max(now, _due(nodes[n])) for n in ready],
                "inputs": [Jsonb(_inputs(n, edges, rows)) for n in ready],
            },
        )
    blocked = 0
    for ids, state, reason in (
        (plan.upstream_failed, "upstream_failed", "upstream {} failed"),
        (plan.cancel, "cancelled", "upstream {} cancelled"),
        (plan.skip, "skipped", "upstream {} skipped"),
    ):
        for node_id in ids:
            culprit = next(
                (
                    rows[p]["name"]
                    for p in parents.get(node_id, [])
                    if NODE_STATUS[RunState(rows[p]["state"])] is not dag.NodeStatus.SUCCEEDED
                ),
                "job",
            )
            await conn.execute(
                q("dag_nodes_block"),
                {"ids": [rows[node_id]["run_id"]], "state": state, "error": reason.format(culprit)},
            )
            blocked += 1
    overall = dag.run_state(nodes, edges)
    finished = None
    if overall is not dag.DagRunState.RUNNING:
        await conn.execute(q("dag_run_finish"), {"id": dag_run_id, "state": overall.value})
        finished = overall.value
    return Advance(promoted=len(ready), blocked=blocked, finished=finished)


def _due(node: dag.NodeState) -> datetime:
    assert node.parents_done_at is not None
    return node.parents_done_at + timedelta(seconds=node.delay_interval)


def _inputs(node_id: str, edges: list[dag.Edge], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a child receives from its ``data`` parents: their outputs by job name."""
    return {
        rows[parent]["name"]: rows[parent]["output"] or ""
        for parent in dag.data_parents(node_id, edges)
    }
