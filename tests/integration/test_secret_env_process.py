"""secret_env end to end: the process gets the value; no answer, output or log shows it.

The command proves it saw the secret by printing its SHA-256, so the secret itself never
appears in the command, the output or the API, and the test can still tell the process
received exactly the stored value. Covers all three ways a spec reaches a worker: a cron
job, a definition placed in a DAG (including a new version that keeps the secret with
``***``), and an inline workflow node.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from common.jobspec import SECRET_MASK
from controller.local_cluster import LocalCluster
from tests.helpers import api, unique, wait_until

pytestmark = pytest.mark.cluster

SECRET = "pw-" + unique("secret")
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()
SHOW_DIGEST = 'printf %s "$DB_PASSWORD" | sha256sum'


@pytest.fixture
def base(shared_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CHRONORAFT_TOKEN", shared_cluster.admin_token)
    return shared_cluster.url("c3")


def call(method: str, base: str, path: str, body: Any = None, expected: int = 200) -> Any:
    status, answer = api(method, base, path, body)
    assert status == expected, answer
    assert SECRET not in json.dumps(answer), f"{method} {path} showed the secret"
    return answer


def finished_dag_run(base: str, run_id: int) -> dict[str, Any]:
    return wait_until(
        f"DAG run {run_id} to finish",
        lambda: (lambda r: r if r["state"] != "running" else None)(
            call("GET", base, f"/api/v1/dag-runs/{run_id}")
        ),
        60,
    )


def assert_no_log_shows_the_secret(cluster: LocalCluster) -> None:
    for name in cluster.nodes:
        assert SECRET not in cluster.nodes[name].log_path.read_text(errors="replace"), name


def test_a_cron_job_process_receives_its_secret(shared_cluster: LocalCluster, base: str) -> None:
    job = call(
        "POST",
        base,
        "/api/v1/jobs",
        {
            "name": unique("secret-cron"),
            "schedule": "0 3 * * *",
            "command": SHOW_DIGEST,
            "secret_env": {"DB_PASSWORD": SECRET},
        },
        expected=201,
    )
    assert job["secret_env"] == {"DB_PASSWORD": SECRET_MASK}
    run = call("POST", base, f"/api/v1/jobs/{job['id']}/trigger", expected=201)
    done = wait_until(
        "the triggered run to finish",
        lambda: (lambda r: r if r["state"] in ("succeeded", "failed") else None)(
            call("GET", base, f"/api/v1/runs/{run['id']}")
        ),
        30,
    )
    assert done["state"] == "succeeded", done
    assert done["output"].split()[0] == DIGEST
    assert_no_log_shows_the_secret(shared_cluster)
    call("DELETE", base, f"/api/v1/jobs/{job['id']}")


def test_a_dag_job_gets_its_definitions_secret_and_a_new_version_keeps_it_with_stars(
    shared_cluster: LocalCluster, base: str
) -> None:
    name = unique("secret-def")
    v1 = call(
        "POST",
        base,
        "/api/v1/definitions",
        {"name": name, "command": SHOW_DIGEST, "secret_env": {"DB_PASSWORD": SECRET}},
        expected=201,
    )
    assert v1["secret_env"] == {"DB_PASSWORD": SECRET_MASK}
    read_back = call("GET", base, f"/api/v1/definitions/{v1['id']}")
    # Sending back what was read (secrets as ***) is the same version...
    resend = {k: read_back[k] for k in ("name", "command", "secret_env")}
    assert call("POST", base, "/api/v1/definitions", resend)["outcome"] == "unchanged"
    # ...and a real change with *** keeps the stored value in the new version.
    v2 = call(
        "POST",
        base,
        "/api/v1/definitions",
        {**resend, "command": SHOW_DIGEST + "; echo v2"},
        expected=201,
    )
    assert v2["version"] == 2 and v2["secret_env"] == {"DB_PASSWORD": SECRET_MASK}
    status, refused = api(
        "POST",
        base,
        "/api/v1/definitions",
        {"name": unique("secret-def"), "command": "true", "secret_env": {"NEW": SECRET_MASK}},
    )
    assert status == 400 and refused["error"]["field"] == "secret_env.NEW", refused

    group = call("POST", base, "/api/v1/dags", {"name": unique("secret-dag")}, expected=201)
    job = call(
        "POST",
        base,
        f"/api/v1/dags/{group['id']}/jobs",
        {"definition_id": v2["id"], "name": "use-secret"},
        expected=201,
    )
    assert job["secret_env"] == {"DB_PASSWORD": SECRET_MASK}
    assert call("GET", base, f"/api/v1/jobs/{job['id']}")["secret_env"] == {
        "DB_PASSWORD": SECRET_MASK
    }
    run = call("POST", base, f"/api/v1/dags/{group['id']}/runs", expected=201)
    done = finished_dag_run(base, run["id"])
    assert done["state"] == "succeeded", done
    output = done["nodes"][0]["output"].split()
    assert output[0] == DIGEST and output[-1] == "v2"
    assert_no_log_shows_the_secret(shared_cluster)


def test_a_workflow_node_receives_its_secret(shared_cluster: LocalCluster, base: str) -> None:
    body = {
        "nodes": [
            {"id": "use-secret", "command": SHOW_DIGEST, "secret_env": {"DB_PASSWORD": SECRET}},
            {"id": "after", "command": "echo done", "depends_on": ["use-secret"]},
        ]
    }
    run = call("POST", base, "/api/v1/workflows", body, expected=201)
    done = finished_dag_run(base, run["id"])
    assert done["state"] == "succeeded", done
    nodes = {n["name"]: n for n in done["nodes"]}
    assert nodes["use-secret"]["output"].split()[0] == DIGEST
    status, refused = api(
        "POST",
        base,
        "/api/v1/workflows",
        {"nodes": [{"id": "x", "command": "true", "secret_env": {"K": SECRET_MASK}}]},
    )
    assert status == 400 and refused["error"]["field"] == "nodes[0].secret_env.K", refused
    assert_no_log_shows_the_secret(shared_cluster)
