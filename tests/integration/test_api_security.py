"""Security of the REST API on a real cluster: tokens and roles, secret env, audit, limits."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from common import jobspec
from controller.local_cluster import LocalCluster, http_json
from tests.helpers import api, unique

SECRET_VALUE = "s3cr3t-" + unique("value")


@pytest.fixture
def base(shared_cluster: LocalCluster) -> str:
    return shared_cluster.url("c1")


def job_body(**overrides: Any) -> dict[str, Any]:
    return {"name": unique("sec"), "schedule": "0 3 * * *", "command": "echo hi", **overrides}


def raw(method: str, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly these headers; (status, response headers, body)."""
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_requests_need_a_token_and_writes_need_the_admin_role(
    shared_cluster: LocalCluster, base: str
) -> None:
    status, headers, body = raw("GET", base + "/api/v1/jobs", {})
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(body)["error"]["code"] == "unauthorized"
    assert raw("GET", base + "/api/v1/jobs", {"Authorization": "Bearer wrong"})[0] == 401

    reader = shared_cluster.read_token
    assert api("GET", base, "/api/v1/jobs", token=reader)[0] == 200
    assert api("GET", base, "/api/v1/cluster", token=reader)[0] == 200
    status, reply = api("POST", base, "/api/v1/jobs", job_body(), token=reader)
    assert status == 403 and reply["error"]["code"] == "forbidden"
    assert api("GET", base, "/api/v1/audit", token=reader)[0] == 403
    status, job = api("POST", base, "/api/v1/jobs", job_body())  # the admin token
    assert status == 201
    assert api("DELETE", base, f"/api/v1/jobs/{job['id']}", token=reader)[0] == 403
    assert api("DELETE", base, f"/api/v1/jobs/{job['id']}")[0] == 200

    for open_path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/docs"):
        assert raw("GET", base + open_path, {})[0] == 200, open_path


def test_secret_env_is_shown_as_stars_and_kept_across_writes(
    shared_cluster: LocalCluster, base: str
) -> None:
    status, job = api(
        "POST",
        base,
        "/api/v1/jobs",
        job_body(env={"MODE": "full"}, secret_env={"DB_PASSWORD": SECRET_VALUE}),
    )
    assert status == 201, job
    assert job["secret_env"] == {"DB_PASSWORD": jobspec.SECRET_MASK}
    answers = [job]
    answers.append(api("GET", base, f"/api/v1/jobs/{job['id']}")[1])
    answers.append(api("GET", base, f"/api/v1/jobs?q={job['name']}")[1])
    answers.append(api("PATCH", base, f"/api/v1/jobs/{job['id']}", {"description": "x"})[1])
    answers.append(api("POST", base, f"/api/v1/jobs/{job['id']}/pause")[1])
    echoed = {k: v for k, v in answers[1].items() if k in jobspec.FIELDS}
    answers.append(api("PATCH", base, f"/api/v1/jobs/{job['id']}", echoed)[1])
    for answer in answers:
        assert SECRET_VALUE not in json.dumps(answer)
    assert answers[-1]["secret_env"] == {"DB_PASSWORD": jobspec.SECRET_MASK}

    with psycopg.connect(shared_cluster.database_url) as conn:
        stored = conn.execute("SELECT secret_env FROM jobs WHERE id = %s", (job["id"],)).fetchone()
        audited = conn.execute(
            "SELECT count(*) FROM audit_log WHERE target_id = %s OR detail::text LIKE %s",
            (str(job["id"]), f"%{SECRET_VALUE}%"),
        ).fetchone()
        leaked = conn.execute(
            "SELECT count(*) FROM audit_log WHERE detail::text LIKE %s", (f"%{SECRET_VALUE}%",)
        ).fetchone()
    assert stored == ({"DB_PASSWORD": SECRET_VALUE},)
    assert audited is not None and audited[0] >= 4 and leaked == (0,)
    for name in shared_cluster.controller_names:
        assert SECRET_VALUE not in shared_cluster.nodes[name].log_path.read_text()
    api("DELETE", base, f"/api/v1/jobs/{job['id']}")


def test_the_audit_trail_says_who_did_what_and_when(
    shared_cluster: LocalCluster, base: str
) -> None:
    started = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    status, job = api("POST", base, "/api/v1/jobs", job_body())
    assert status == 201
    ref = job["name"]
    api("PATCH", base, f"/api/v1/jobs/{ref}", {"description": "changed"})
    api("POST", base, f"/api/v1/jobs/{ref}/pause")
    status, run = api("POST", base, f"/api/v1/jobs/{ref}/trigger")
    assert status == 201
    api("POST", base, f"/api/v1/jobs/{ref}/resume")
    api("DELETE", base, f"/api/v1/jobs/{job['id']}")
    api("GET", base, f"/api/v1/jobs/{job['id']}")  # reads are not audited
    api("POST", base, "/api/v1/jobs", {"name": "x"})  # nor refused writes

    status, page = api("GET", base, f"/api/v1/audit?actor=admin&since={started}&limit=1000")
    assert status == 200, page
    mine = [
        e
        for e in page["items"]
        if e["target_id"] in (ref, str(job["id"])) and e["target_type"] == "job"
    ]
    assert [e["action"] for e in reversed(mine)] == [
        "job.create",
        "job.update",
        "job.pause",
        "job.trigger",
        "job.resume",
        "job.delete",
    ]
    create, update, trigger = mine[-1], mine[-2], mine[2]
    assert create["actor"] == "admin" and create["role"] == "admin"
    assert create["method"] == "POST" and create["path"] == "/api/v1/jobs"
    assert create["status"] == 201 and create["target_id"] == str(job["id"])
    assert set(create["detail"]["fields"]) == {"name", "schedule", "command"}
    assert update["detail"]["fields"] == ["description"]
    assert trigger["detail"]["result_id"] == run["id"]
    assert all(datetime.fromisoformat(e["at"]) >= datetime.fromisoformat(started) for e in mine)

    status, deletes = api("GET", base, f"/api/v1/audit?action=job.delete&since={started}")
    assert status == 200 and all(e["action"] == "job.delete" for e in deletes["items"])
    assert any(e["target_id"] == str(job["id"]) for e in deletes["items"])
    status, one = api("GET", base, f"/api/v1/audit?since={started}&limit=1&offset=1")
    assert status == 200 and len(one["items"]) == 1 and one["total"] >= 6
    for bad in ("since=yesterday", "limit=0", "actor=" + "a" * 65, "offset=-1"):
        status, reply = api("GET", base, f"/api/v1/audit?{bad}")
        assert status == 400 and reply["error"]["field"] == bad.split("=")[0], bad


LIMITS: list[tuple[dict[str, Any], str, str]] = [
    ({"name": "n" * 201}, "name", "200"),
    ({"name": "bad name!"}, "name", "letters, digits"),
    ({"description": "d" * 2001}, "description", "2000"),
    ({"schedule": "* " * 101}, "schedule", "200"),
    ({"command": "c" * (jobspec.MAX_COMMAND + 1)}, "command", str(jobspec.MAX_COMMAND)),
    ({"args": ["a"] * (jobspec.MAX_ARGS + 1)}, "args", str(jobspec.MAX_ARGS)),
    ({"args": ["a" * (jobspec.MAX_VALUE + 1)]}, "args[0]", str(jobspec.MAX_VALUE)),
    ({"env": {f"E{i}": "v" for i in range(jobspec.MAX_ENV + 1)}}, "env", str(jobspec.MAX_ENV)),
    ({"env": {"E": "v" * (jobspec.MAX_VALUE + 1)}}, "env.E", str(jobspec.MAX_VALUE)),
    ({"env": {"BAD-NAME": "v"}}, "env.BAD-NAME", "not allowed"),
    (
        {"secret_env": {f"S{i}": "v" for i in range(jobspec.MAX_ENV + 1)}},
        "secret_env",
        str(jobspec.MAX_ENV),
    ),
    (
        {"labels": {f"l{i}": "v" for i in range(jobspec.MAX_LABELS + 1)}},
        "labels",
        str(jobspec.MAX_LABELS),
    ),
    ({"cwd": "/" + "d" * 4096}, "cwd", "4096"),
    ({"timezone": "Europe/" + "x" * 60}, "timezone", "64"),
    ({"timeout": "8d"}, "timeout", "604800"),
    ({"max_retries": 101}, "max_retries", "100"),
    ({"max_concurrency": 1001}, "max_concurrency", "1000"),
]


@pytest.mark.parametrize(("fields", "field", "limit"), LIMITS)
def test_every_input_limit_is_a_4xx_naming_the_field_and_the_limit(
    base: str, fields: dict[str, Any], field: str, limit: str
) -> None:
    status, reply = api("POST", base, "/api/v1/jobs", job_body(**fields))
    assert status == 400, reply
    assert reply["error"]["field"] == field
    assert limit in reply["error"]["message"]


def test_a_body_over_the_byte_limit_is_413_naming_the_limit(
    shared_cluster: LocalCluster, base: str
) -> None:
    status, reply = http_json(
        "POST", base + "/api/v1/jobs", job_body(description="x" * 1_100_000), timeout=10
    )
    assert status == 413
    assert reply["error"]["code"] == "body_too_large" and "1048576" in reply["error"]["message"]
