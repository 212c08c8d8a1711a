"""DAG workflows through the REST API of a real cluster: definitions, DAGs, runs, control.

Runs really execute on the cluster's workers; time-dependent checks compare timestamps the
system recorded, and every wait has a deadline.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controller.local_cluster import LocalCluster
from tests.helpers import api, unique, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture
def base(shared_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CHRONORAFT_TOKEN", shared_cluster.admin_token)
    return shared_cluster.url("c2")  # a follower or the leader: writes work on every node


def ok(status: int, body: Any, expected: int = 200) -> Any:
    assert status == expected, body
    return body


def post(base: str, path: str, body: Any = None, expected: int = 201) -> Any:
    return ok(*api("POST", base, path, body), expected=expected)


def get(base: str, path: str) -> Any:
    return ok(*api("GET", base, path))


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def definition(base: str, name: str, command: str, **extra: Any) -> dict[str, Any]:
    return post(base, "/api/v1/definitions", {"name": name, "command": command, **extra})


def build_dag(
    base: str, commands: dict[str, str], edges: list[tuple[str, str]], **per_job: Any
) -> tuple[dict[str, Any], dict[str, int]]:
    """A DAG with one definition and job per entry of ``commands``; returns (dag, job ids)."""
    group = post(base, "/api/v1/dags", {"name": unique("dag")})
    ids: dict[str, int] = {}
    for node, command in commands.items():
        body = {"name": unique(node), "command": command, **per_job.get(node, {})}
        d = post(base, "/api/v1/definitions", body)
        job = post(
            base, f"/api/v1/dags/{group['id']}/jobs", {"definition_id": d["id"], "name": node}
        )
        ids[node] = job["id"]
    if edges:
        post(
            base,
            f"/api/v1/dags/{group['id']}/dependencies/bulk",
            {"dependencies": [{"parent": p, "child": c} for p, c in edges]},
        )
    return group, ids


def finished_run(base: str, run_id: int, timeout: float = 60) -> dict[str, Any]:
    return wait_until(
        f"DAG run {run_id} to finish",
        lambda: (lambda r: r if r["state"] != "running" else None)(
            get(base, f"/api/v1/dag-runs/{run_id}")
        ),
        timeout,
    )


def nodes_by_name(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in run["nodes"]}


# ----- namespaces -----


def test_namespaces_create_list_get_delete(base: str) -> None:
    name = unique("ns").lower()
    created = post(base, "/api/v1/namespaces", {"name": name, "description": "team a"})
    assert created["name"] == name
    assert ok(*api("POST", base, "/api/v1/namespaces", {"name": name}), 409)
    listed = get(base, "/api/v1/namespaces?limit=1000")
    assert {"default", name} <= {n["name"] for n in listed["items"]}
    assert get(base, f"/api/v1/namespaces/{name}")["counts"] == {
        "definitions": 0,
        "dags": 0,
        "jobs": 0,
    }
    definition(base, "d1", "true", namespace=name)
    refused = ok(*api("DELETE", base, f"/api/v1/namespaces/{name}"), 409)
    assert "1 definitions" in refused["error"]["message"]
    assert ok(*api("DELETE", base, "/api/v1/namespaces/default"), 409)
    error = ok(*api("POST", base, "/api/v1/namespaces", {"name": "Bad Name"}), 400)["error"]
    assert error["field"] == "name"
    assert ok(*api("GET", base, "/api/v1/namespaces/nope-nope"), 404)


# ----- definitions -----


def test_an_update_is_a_new_version_and_the_old_one_stays_readable(base: str) -> None:
    name = unique("def")
    v1 = definition(base, name, "echo one")
    assert v1["version"] == 1 and v1["outcome"] == "created"
    same = post(base, "/api/v1/definitions", {"name": name, "command": "echo one"}, expected=200)
    assert same["id"] == v1["id"] and same["outcome"] == "unchanged"
    v2 = definition(base, name, "echo two")
    assert v2["version"] == 2 and v2["id"] != v1["id"] and v2["outcome"] == "updated"
    old = get(base, f"/api/v1/definitions/{v1['id']}")
    assert old["deleted"] is True and old["command"] == "echo one"
    live = get(base, f"/api/v1/definitions?name={name}")
    assert [d["version"] for d in live["items"]] == [2]
    every = get(base, f"/api/v1/definitions?name={name}&include_deleted=true")
    assert [d["version"] for d in every["items"]] == [1, 2]


def test_a_job_keeps_the_definition_version_it_was_built_from(base: str) -> None:
    name = unique("pinned")
    v1 = definition(base, name, "echo v1")
    group = post(base, "/api/v1/dags", {"name": unique("dag")})
    job = post(base, f"/api/v1/dags/{group['id']}/jobs", {"definition": name})
    definition(base, name, "echo v2")
    assert job["definition_id"] == v1["id"] and job["definition_version"] == 1
    assert get(base, f"/api/v1/jobs/{job['id']}")["command"] == "echo v1"
    run = post(base, f"/api/v1/dags/{group['id']}/runs")
    done = finished_run(base, run["id"])
    assert done["state"] == "succeeded"
    assert done["nodes"][0]["output"].strip() == "v1"


def test_bulk_upsert_is_one_transaction(base: str) -> None:
    a, b = unique("bulk"), unique("bulk")
    result = post(
        base,
        "/api/v1/definitions/bulk",
        {"definitions": [{"name": a, "command": "true"}, {"name": b, "command": "true"}]},
        expected=200,
    )
    assert (result["created"], result["updated"], result["unchanged"]) == (2, 0, 0)
    again = post(
        base,
        "/api/v1/definitions/bulk",
        {"definitions": [{"name": a, "command": "true"}, {"name": b, "command": "false"}]},
        expected=200,
    )
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 1, 1)
    c = unique("bulk")
    status, body = api(
        "POST",
        base,
        "/api/v1/definitions/bulk",
        {
            "definitions": [
                {"name": c, "command": "true"},
                {"name": a, "command": "x", "kind": "nope"},
            ]
        },
    )
    assert status == 400 and body["error"]["field"] == "definitions[1].kind"
    assert get(base, f"/api/v1/definitions?name={c}")["items"] == []  # nothing half-written
    status, body = api(
        "POST",
        base,
        "/api/v1/definitions/bulk",
        {
            "definitions": [
                {"name": c, "command": "true"},
                {"name": a, "command": "y", "namespace": "nosuch"},
            ]
        },
    )
    assert status == 404 and body["error"]["field"] == "definitions[1].namespace"
    assert get(base, f"/api/v1/definitions?name={c}")["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": "true"}, "name"),
        ({"name": "x"}, "command"),
        ({"name": "x", "command": "true", "kind": "shell"}, "kind"),
        ({"name": "x", "kind": "http"}, "http"),
        ({"name": "x", "kind": "http", "http": {"url": "ftp://a"}}, "http.url"),
        (
            {"name": "x", "kind": "http", "http": {"url": "http://a", "method": "BREW"}},
            "http.method",
        ),
        ({"name": "x", "command": "true", "http": {"url": "http://a"}}, "http"),
        ({"name": "x", "command": "true", "cron_spec": "every day"}, "cron_spec"),
        ({"name": "x", "command": "true", "timezone": "Mars/Base"}, "timezone"),
        ({"name": "x", "command": "true", "delay_interval": "soon"}, "delay_interval"),
        ({"name": "x", "command": "true", "surprise": 1}, "surprise"),
        ({"name": "x", "command": "true", "namespace": "UPPER"}, "namespace"),
    ],
)
def test_bad_definitions_get_a_400_naming_the_field(base: str, body: dict, field: str) -> None:
    status, answer = api("POST", base, "/api/v1/definitions", body)
    assert status == 400, answer
    assert answer["error"]["field"] == field


def test_a_definition_with_cron_spec_is_scheduled_like_a_cron_job(base: str) -> None:
    name = unique("cron-def")
    d = definition(base, name, "echo scheduled", cron_spec="* * * * * *")
    job = get(base, f"/api/v1/jobs/{d['scheduled_job_id']}")
    assert job["schedule"] == "* * * * * *" and job["command"] == "echo scheduled"
    runs = wait_until(
        "the definition's schedule to fire",
        lambda: get(base, f"/api/v1/runs?job_id={job['id']}&state=succeeded")["items"],
        30,
    )
    assert runs[0]["trigger"] in ("schedule", "catchup")
    definition(base, name, "echo scheduled")  # cron_spec dropped: the schedule stops
    assert ok(*api("GET", base, f"/api/v1/jobs/{job['id']}"), 404)


# ----- DAGs and edges -----


def test_a_cycle_is_refused_with_the_cycle_spelled_out(base: str) -> None:
    group, ids = build_dag(base, {"a": "true", "b": "true", "c": "true"}, [("a", "b"), ("b", "c")])
    status, body = api(
        "POST", base, f"/api/v1/dags/{group['id']}/dependencies", {"parent": "c", "child": "a"}
    )
    assert status == 409, body
    assert body["error"]["code"] == "cycle"
    assert "a → b → c → a" in body["error"]["message"]
    assert body["error"]["cycle"] == ["a", "b", "c"]
    status, body = api(
        "POST", base, f"/api/v1/dags/{group['id']}/dependencies", {"parent": "a", "child": "a"}
    )
    assert status == 409 and "a → a" in body["error"]["message"]
    # A bulk with one bad edge writes none of them.
    status, body = api(
        "POST",
        base,
        f"/api/v1/dags/{group['id']}/dependencies/bulk",
        {
            "dependencies": [
                {"parent": "a", "child": "c", "dependency_type": "order-only"},
                {"parent_job_id": ids["c"], "child_job_id": ids["b"]},
            ]
        },
    )
    assert status == 409 and "b → c → b" in body["error"]["message"]
    edges = get(base, f"/api/v1/dags/{group['id']}/dependencies")["items"]
    assert {(e["parent_name"], e["child_name"]) for e in edges} == {("a", "b"), ("b", "c")}


def test_the_global_check_sees_cycles_through_jobs_shared_between_dags(base: str) -> None:
    first, ids = build_dag(base, {"x": "true", "y": "true"}, [("x", "y")])
    second = post(base, "/api/v1/dags", {"name": unique("dag")})
    for node in ("x", "y"):
        post(base, f"/api/v1/dags/{second['id']}/jobs", {"job_id": ids[node]})
    status, body = api(
        "POST", base, f"/api/v1/dags/{second['id']}/dependencies", {"parent": "y", "child": "x"}
    )
    assert status == 409, body
    assert "across DAGs" in body["error"]["message"]
    shared = get(base, f"/api/v1/jobs/{ids['x']}")
    assert shared["dag_ids"] == sorted([first["id"], second["id"]])
    # Deleting one DAG keeps the jobs the other still uses.
    ok(*api("DELETE", base, f"/api/v1/dags/{first['id']}"))
    assert get(base, f"/api/v1/jobs/{ids['x']}")["deleted"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"parent": "a"}, "child_job_id"),
        ({"parent": "a", "child": "zz"}, "child"),
        ({"parent_job_id": 999999999, "child": "a"}, "parent_job_id"),
        ({"parent": "a", "child": "b", "dependency_type": "soft"}, "dependency_type"),
    ],
)
def test_bad_edges_get_a_400_naming_the_field(base: str, body: dict, field: str) -> None:
    group, _ = build_dag(base, {"a": "true", "b": "true"}, [])
    status, answer = api("POST", base, f"/api/v1/dags/{group['id']}/dependencies", body)
    assert status == 400, answer
    assert answer["error"]["field"] == field


# ----- runs -----


def test_a_diamond_runs_in_dependency_order_and_children_get_their_parents_output(
    base: str,
) -> None:
    group, ids = build_dag(
        base,
        {
            "a": "echo from-a",
            "b": "sleep 0.3; echo from-b",
            "c": "echo from-c",
            "d": 'echo "got $CHRONORAFT_INPUT_B and $CHRONORAFT_INPUT_C"',
        },
        [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")],
    )
    run = post(base, f"/api/v1/dags/{group['id']}/runs")
    assert {n["state"] for n in run["nodes"]} <= {"waiting", "pending"}
    done = finished_run(base, run["id"])
    assert done["state"] == "succeeded", done
    n = nodes_by_name(done)
    assert when(n["a"]["finished_at"]) <= when(n["b"]["started_at"])
    assert when(n["a"]["finished_at"]) <= when(n["c"]["started_at"])
    assert max(when(n["b"]["finished_at"]), when(n["c"]["finished_at"])) <= when(
        n["d"]["started_at"]
    )
    assert "from-b" in n["d"]["output"] and "from-c" in n["d"]["output"]
    assert n["d"]["parents"] == sorted([ids["b"], ids["c"]])
    listed = get(base, f"/api/v1/dags/{group['id']}/runs")
    assert listed["items"][0]["id"] == run["id"]
    assert get(base, f"/api/v1/dags/{group['id']}")["latest_run"]["state"] == "succeeded"


def test_a_delayed_child_starts_that_long_after_its_parent(base: str) -> None:
    group, _ = build_dag(
        base, {"p": "true", "child": "true"}, [("p", "child")], child={"delay_interval": "2s"}
    )
    done = finished_run(base, post(base, f"/api/v1/dags/{group['id']}/runs")["id"])
    n = nodes_by_name(done)
    gap = (when(n["child"]["started_at"]) - when(n["p"]["finished_at"])).total_seconds()
    assert gap >= 2.0, gap
    assert when(n["child"]["not_before"]) >= when(n["p"]["finished_at"])


def test_a_failing_node_retries_with_backoff_then_succeeds(base: str, tmp_path: Path) -> None:
    marker = tmp_path / "second-time"
    group, _ = build_dag(
        base,
        {"flaky": f"test -f {marker} || {{ touch {marker}; exit 3; }}"},
        [],
        flaky={"max_retries": 2, "retry_backoff": "1s"},
    )
    done = finished_run(base, post(base, f"/api/v1/dags/{group['id']}/runs")["id"])
    node = done["nodes"][0]
    assert done["state"] == "succeeded" and node["attempt"] == 2
    attempts = get(base, f"/api/v1/runs/{node['run_id']}")["attempts"]
    assert [a["state"] for a in attempts] == ["failed", "succeeded"]
    gap = (when(attempts[1]["started_at"]) - when(attempts[0]["finished_at"])).total_seconds()
    assert gap >= 0.5, gap  # backoff of 1 s with jitter


def test_a_parent_out_of_retries_fails_its_descendants_and_the_run(base: str) -> None:
    group, _ = build_dag(
        base,
        {"root": "exit 1", "mid": "true", "leaf": "true", "side": "true"},
        [("root", "mid"), ("mid", "leaf")],
    )
    done = finished_run(base, post(base, f"/api/v1/dags/{group['id']}/runs")["id"])
    n = nodes_by_name(done)
    assert done["state"] == "failed"
    assert n["root"]["state"] == "failed"
    assert n["mid"]["state"] == n["leaf"]["state"] == "upstream_failed"
    assert "root" in n["mid"]["error"]
    assert n["side"]["state"] == "succeeded"
    assert n["leaf"]["run_id"] and n["leaf"]["started_at"] is None


def test_manual_complete_unblocks_descendants_and_nonsense_transitions_are_409(base: str) -> None:
    group, ids = build_dag(base, {"gate": "exit 1", "after": "echo after"}, [("gate", "after")])
    run = post(base, f"/api/v1/dags/{group['id']}/runs")
    finished_run(base, run["id"])
    status, body = api("POST", base, f"/api/v1/jobs/{ids['after']}/retry")
    assert status == 409 and "upstream_failed" in body["error"]["message"]
    done = post(base, f"/api/v1/jobs/{ids['gate']}/complete", {"dag_run_id": run["id"]}, 200)
    assert done["state"] == "succeeded" and done["dag_run"]["state"] == "running"
    final = finished_run(base, run["id"])
    assert final["state"] == "succeeded"
    assert nodes_by_name(final)["after"]["output"].strip() == "after"
    for action in ("complete", "fail", "cancel", "retry"):
        status, body = api("POST", base, f"/api/v1/jobs/{ids['after']}/{action}")
        assert status == 409, (action, body)
        assert body["error"]["field"] == "state"
    assert ok(*api("POST", base, "/api/v1/jobs/999999999/complete"), 404)


def test_manual_retry_and_fail_and_cancel(base: str, tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    group, ids = build_dag(
        base,
        {"job": f"test -f {marker}", "next": "sleep 30"},
        [("job", "next")],
    )
    run = post(base, f"/api/v1/dags/{group['id']}/runs")
    assert finished_run(base, run["id"])["state"] == "failed"
    marker.touch()
    retried = post(base, f"/api/v1/jobs/{ids['job']}/retry", None, 200)
    assert retried["state"] == "waiting"
    wait_until(
        "next to start after the retried parent succeeded",
        lambda: (
            nodes_by_name(get(base, f"/api/v1/dag-runs/{run['id']}"))["next"]["state"] == "running"
        ),
        30,
    )
    n = nodes_by_name(get(base, f"/api/v1/dag-runs/{run['id']}"))
    assert n["job"]["attempt"] == 2 and n["job"]["state"] == "succeeded"
    cancelled = post(base, f"/api/v1/jobs/{ids['next']}/cancel", None, 200)
    assert cancelled["state"] == "cancelling"
    final = finished_run(base, run["id"])
    assert final["state"] == "cancelled"
    assert nodes_by_name(final)["next"]["state"] == "cancelled"
    # fail: a waiting node ends failed by hand, and its run with it.
    group2, ids2 = build_dag(base, {"slow": "sleep 30", "then": "true"}, [("slow", "then")])
    run2 = post(base, f"/api/v1/dags/{group2['id']}/runs")
    post(base, f"/api/v1/jobs/{ids2['then']}/fail", {"dag_run_id": run2["id"]}, 200)
    post(base, f"/api/v1/dag-runs/{run2['id']}/cancel", None, 200)
    final2 = finished_run(base, run2["id"])
    assert final2["state"] == "failed"
    assert nodes_by_name(final2)["then"]["state"] == "failed"


def test_a_run_idempotency_key_returns_the_existing_run(base: str) -> None:
    group, _ = build_dag(base, {"only": "true"}, [])
    first = post(base, f"/api/v1/dags/{group['id']}/runs", {"idempotency_key": "nightly-1"})
    again = post(base, f"/api/v1/dags/{group['id']}/runs", {"idempotency_key": "nightly-1"}, 200)
    assert again["id"] == first["id"]
    other = post(base, f"/api/v1/dags/{group['id']}/runs", {"idempotency_key": "nightly-2"})
    assert other["id"] != first["id"]
    assert get(base, f"/api/v1/dags/{group['id']}/runs")["total"] == 2


def workflow_body(key: str | None = None, **node_extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "nodes": [
            {"id": "extract", "command": "echo rows", "retries": 1, "timeout_seconds": 30},
            {
                "id": "load",
                "command": 'echo "loaded $CHRONORAFT_INPUT_EXTRACT"',
                "depends_on": ["extract"],
                **node_extra,
            },
        ]
    }
    if key:
        body["idempotency_key"] = key
    return body


def test_an_inline_workflow_runs_and_a_repeated_submission_returns_the_same_run(base: str) -> None:
    key = unique("wf")
    run = post(base, "/api/v1/workflows", workflow_body(key))
    again = post(base, "/api/v1/workflows", workflow_body(key), 200)
    assert again["id"] == run["id"]
    done = finished_run(base, run["id"])
    assert done["state"] == "succeeded" and done["trigger"] == "workflow"
    assert nodes_by_name(done)["load"]["output"].strip() == "loaded rows"
    status, body = api("POST", base, "/api/v1/workflows", {**workflow_body(key), "name": "other"})
    assert status == 409 and body["error"]["field"] == "idempotency_key"


def test_a_node_idempotency_key_reuses_a_successful_result(base: str) -> None:
    key = unique("node-key")
    first = finished_run(
        base, post(base, "/api/v1/workflows", workflow_body(None, idempotency_key=key))["id"]
    )
    load = nodes_by_name(first)["load"]
    second = post(base, "/api/v1/workflows", workflow_body(None, idempotency_key=key))
    reused = nodes_by_name(second)["load"]
    assert reused["state"] == "succeeded" and reused["reused_run_id"] == load["run_id"]
    assert reused["output"] == load["output"]
    assert finished_run(base, second["id"])["state"] == "succeeded"


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"nodes": []}, "nodes", 400),
        ({"nodes": [{"id": "a"}]}, "nodes[0].command", 400),
        (
            {"nodes": [{"id": "a", "command": "true"}, {"id": "a", "command": "true"}]},
            "nodes[1].id",
            400,
        ),
        (
            {"nodes": [{"id": "a", "command": "true", "depends_on": ["z"]}]},
            "nodes[0].depends_on",
            400,
        ),
        (
            {
                "nodes": [
                    {"id": "a", "command": "true", "depends_on": ["b"]},
                    {"id": "b", "command": "true", "depends_on": ["a"]},
                ]
            },
            "dependencies",
            409,
        ),
        ({"nodes": [{"id": "a", "command": "true", "retries": -1}]}, "nodes[0].retries", 400),
        (
            {"nodes": [{"id": "a", "command": "true", "timeout_seconds": "1y"}]},
            "nodes[0].timeout_seconds",
            400,
        ),
        ({"nodes": [{"id": f"n{i}", "command": "true"} for i in range(501)]}, "nodes", 400),
    ],
)
def test_bad_workflows_get_a_clear_4xx(base: str, body: dict, field: str, status: int) -> None:
    got, answer = api("POST", base, "/api/v1/workflows", body)
    assert got == status, answer
    assert answer["error"]["field"] == field


def test_http_and_binary_kinds_run_on_workers(base: str, shared_cluster: LocalCluster) -> None:
    health = shared_cluster.url("c1") + "/healthz"
    group, _ = build_dag(
        base,
        {"ping": "", "echo": "/bin/echo"},
        [("ping", "echo")],
        ping={"kind": "http", "command": None, "http": {"url": health, "expected_status": 200}},
        echo={"kind": "binary", "args": ["hello", "$NOT_EXPANDED"]},
    )
    done = finished_run(base, post(base, f"/api/v1/dags/{group['id']}/runs")["id"])
    n = nodes_by_name(done)
    assert done["state"] == "succeeded", done
    assert n["ping"]["output"].startswith("HTTP 200")
    assert n["echo"]["output"].strip() == "hello $NOT_EXPANDED"


def test_a_scheduled_dag_is_run_by_the_leader(base: str) -> None:
    group = post(base, "/api/v1/dags", {"name": unique("sched"), "schedule": "* * * * * *"})
    d = definition(base, unique("tick"), "true")
    post(base, f"/api/v1/dags/{group['id']}/jobs", {"definition_id": d["id"]})
    runs = wait_until(
        "two scheduled DAG runs to succeed",
        lambda: (lambda items: items if len(items) >= 2 else None)(
            get(base, f"/api/v1/dags/{group['id']}/runs?state=succeeded")["items"]
        ),
        30,
    )
    assert {r["trigger"] for r in runs} <= {"schedule", "catchup"}
    assert len({r["scheduled_for"] for r in runs}) == len(runs)
    ok(*api("DELETE", base, f"/api/v1/dags/{group['id']}"))
    assert post(base, "/api/v1/scheduler/reload", None, 202)["requested"] is True


def test_prune_moves_deleted_finished_rows_to_history(base: str) -> None:
    group, ids = build_dag(base, {"one": "true", "two": "true"}, [("one", "two")])
    run = post(base, f"/api/v1/dags/{group['id']}/runs")
    finished_run(base, run["id"])
    ok(*api("DELETE", base, f"/api/v1/dags/{group['id']}"))
    result = post(base, "/api/v1/admin/prune", None, 200)
    moved = result["moved"]
    assert moved["dags"] >= 1 and moved["jobs"] >= 2 and moved["dependencies"] >= 1
    assert result["total"] == sum(moved.values())
    listed = get(base, "/api/v1/dags?include_history=true&limit=1000")
    assert any(d["id"] == group["id"] and d["pruned"] for d in listed["items"])
    assert all(d["id"] != group["id"] for d in get(base, "/api/v1/dags?limit=1000")["items"])
    assert get(base, f"/api/v1/dags/{group['id']}")["pruned"] is True
    edges = get(base, f"/api/v1/dags/{group['id']}/dependencies?include_history=true")["items"]
    assert [(e["parent_job_id"], e["child_job_id"]) for e in edges] == [(ids["one"], ids["two"])]
    assert get(base, f"/api/v1/dag-runs/{run['id']}")["state"] == "succeeded"  # history stays
