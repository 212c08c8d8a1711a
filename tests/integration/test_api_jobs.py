"""The jobs and runs API against a real 3-controller cluster on a real PostgreSQL."""

from __future__ import annotations

import pytest

from controller.local_cluster import LocalCluster, http_json
from tests.helpers import ADMIN_TOKEN, api, unique, wait_until


@pytest.fixture
def base(shared_cluster: LocalCluster) -> str:
    return shared_cluster.url("c1")


def job_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": unique("job"),
        "schedule": "0 3 * * *",
        "command": "echo hi",
    }
    body.update(overrides)
    return body


def test_create_get_update_patch_delete_round_trip(base: str) -> None:
    status, job = api(
        "POST",
        base,
        "/api/v1/jobs",
        job_body(
            description="d",
            timezone="Europe/Berlin",
            env={"A": "1"},
            labels={"pool": "x"},
            timeout="1h30m",
            max_retries=3,
            retry_backoff="5s",
        ),
    )
    assert status == 201, job
    assert job["timeout"] == 5400 and job["retry_backoff"] == 5 and job["max_retries"] == 3
    assert job["next_run_at"].endswith("+00:00")
    status, got = api("GET", base, f"/api/v1/jobs/{job['id']}")
    assert status == 200 and got == job
    status, by_name = api("GET", base, f"/api/v1/jobs/{job['name']}")
    assert status == 200 and by_name["id"] == job["id"]

    replaced = job_body(name=job["name"], schedule="*/5 * * * *", command="true")
    status, put = api("PUT", base, f"/api/v1/jobs/{job['id']}", replaced)
    assert status == 200, put
    assert put["schedule"] == "*/5 * * * *" and put["env"] == {} and put["timeout"] == 0
    assert put["version"] == job["version"] + 1

    status, patched = api("PATCH", base, f"/api/v1/jobs/{job['id']}", {"description": "new"})
    assert status == 200 and patched["description"] == "new"
    assert patched["schedule"] == "*/5 * * * *"

    status, _ = api("DELETE", base, f"/api/v1/jobs/{job['id']}")
    assert status == 200
    status, body = api("GET", base, f"/api/v1/jobs/{job['id']}")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_pause_resume_and_list_filters(base: str) -> None:
    status, job = api("POST", base, "/api/v1/jobs", job_body())
    assert status == 201
    status, paused = api("POST", base, f"/api/v1/jobs/{job['id']}/pause")
    assert status == 200 and paused["paused"] is True and paused["next_run_at"] is None
    status, listing = api("GET", base, f"/api/v1/jobs?status=paused&q={job['name']}")
    assert status == 200 and [j["id"] for j in listing["items"]] == [job["id"]]
    status, listing = api("GET", base, f"/api/v1/jobs?status=active&q={job['name']}")
    assert listing["items"] == []
    status, resumed = api("POST", base, f"/api/v1/jobs/{job['id']}/resume")
    assert status == 200 and resumed["paused"] is False and resumed["next_run_at"]
    status, page = api("GET", base, "/api/v1/jobs?limit=1&offset=0")
    assert status == 200 and len(page["items"]) == 1 and page["total"] >= 1


def test_writes_through_a_follower_reach_the_leader(shared_cluster: LocalCluster) -> None:
    leader = shared_cluster.leader()
    follower = next(n for n in shared_cluster.controller_names if n != leader)
    base = shared_cluster.url(follower)
    status, job = api(
        "POST", base, "/api/v1/jobs", job_body(schedule="@every 1s", command="echo via-follower")
    )
    assert status == 201

    def succeeded_run() -> dict | None:
        _, runs = api("GET", base, f"/api/v1/runs?job_id={job['id']}&status=succeeded")
        return runs["items"][0] if runs["items"] else None

    run = wait_until("a run of the job created on a follower", succeeded_run, timeout=30)
    status, detail = api("GET", shared_cluster.url(leader), f"/api/v1/runs/{run['id']}")
    assert status == 200
    assert detail["output"].strip() == "via-follower"
    assert detail["exit_code"] == 0 and detail["attempts"][0]["state"] == "succeeded"
    api("DELETE", base, f"/api/v1/jobs/{job['id']}")


def test_trigger_runs_now_with_args_env_and_records_output(base: str) -> None:
    status, job = api(
        "POST",
        base,
        "/api/v1/jobs",
        job_body(
            command="/bin/sh",
            args=["-c", 'echo "$GREETING" "$1"', "sh", "arg-one"],
            env={"GREETING": "hello"},
        ),
    )
    assert status == 201
    status, run = api("POST", base, f"/api/v1/jobs/{job['id']}/trigger")
    assert status == 201 and run["trigger"] == "manual"

    def finished() -> dict | None:
        _, body = api("GET", base, f"/api/v1/runs/{run['id']}")
        return body if body["state"] == "succeeded" else None

    done = wait_until("the triggered run to succeed", finished, timeout=30)
    assert done["output"] == "hello arg-one\n"
    assert done["started_at"] and done["finished_at"] and done["attempt"] == 1


def test_failed_run_is_retried_then_recorded_failed(base: str) -> None:
    status, job = api(
        "POST",
        base,
        "/api/v1/jobs",
        job_body(
            command="echo boom; exit 3",
            max_retries=1,
            retry_backoff="1s",
        ),
    )
    status, run = api("POST", base, f"/api/v1/jobs/{job['id']}/trigger")

    def failed() -> dict | None:
        _, body = api("GET", base, f"/api/v1/runs/{run['id']}")
        return body if body["state"] == "failed" else None

    done = wait_until("the run to fail after its retry", failed, timeout=40)
    assert done["attempt"] == 2 and done["exit_code"] == 3
    assert [a["state"] for a in done["attempts"]] == ["failed", "failed"]
    assert done["attempts"][0]["output"] == "boom\n"


def test_timeout_kills_the_run_and_says_so(base: str) -> None:
    status, job = api("POST", base, "/api/v1/jobs", job_body(command="sleep 30", timeout=1))
    status, run = api("POST", base, f"/api/v1/jobs/{job['id']}/trigger")

    def timed_out() -> dict | None:
        _, body = api("GET", base, f"/api/v1/runs/{run['id']}")
        return body if body["state"] == "timed_out" else None

    done = wait_until("the run to time out", timed_out, timeout=30)
    assert "timed out" in (done["error"] or "")


def test_cancel_kills_a_running_run(base: str) -> None:
    status, job = api("POST", base, "/api/v1/jobs", job_body(command="sleep 60"))
    status, run = api("POST", base, f"/api/v1/jobs/{job['id']}/trigger")
    wait_until(
        "the run to start",
        lambda: api("GET", base, f"/api/v1/runs/{run['id']}")[1]["state"] == "running",
        timeout=30,
    )
    status, body = api("POST", base, f"/api/v1/runs/{run['id']}/cancel")
    assert status in (200, 202), body
    wait_until(
        "the run to be cancelled",
        lambda: api("GET", base, f"/api/v1/runs/{run['id']}")[1]["state"] == "cancelled",
        timeout=30,
    )
    status, body = api("POST", base, f"/api/v1/runs/{run['id']}/cancel")
    assert status == 409 and body["error"]["code"] == "conflict"


def test_output_is_capped_and_marked_truncated(base: str) -> None:
    status, job = api(
        "POST",
        base,
        "/api/v1/jobs",
        job_body(
            command="head -c 200000 /dev/zero | tr '\\0' 'x'; echo; echo END",
        ),
    )
    status, run = api("POST", base, f"/api/v1/jobs/{job['id']}/trigger")
    done = wait_until(
        "the run to finish",
        lambda: (lambda b: b if b["state"] == "succeeded" else None)(
            api("GET", base, f"/api/v1/runs/{run['id']}")[1]
        ),
        timeout=30,
    )
    assert done["output_truncated"] is True
    assert len(done["output"].encode()) <= 65536
    assert done["output"].endswith("END\n")


def test_runs_filters_by_status_and_time(base: str) -> None:
    status, body = api(
        "GET", base, "/api/v1/runs?status=succeeded&since=2020-01-01T00:00:00Z&limit=5"
    )
    assert status == 200 and all(r["state"] == "succeeded" for r in body["items"])
    status, body = api("GET", base, "/api/v1/runs?until=2000-01-01T00:00:00%2B00:00")
    assert status == 200 and body["items"] == []


BAD_JOBS = [
    ({"schedule": "* * * * *", "command": "x"}, "name"),
    ({"name": "n", "command": "x"}, "schedule"),
    ({"name": "n", "schedule": "61 * * * *", "command": "x"}, "schedule"),
    ({"name": "n", "schedule": "* * * * * * * *", "command": "x"}, "schedule"),
    ({"name": "n", "schedule": "@every banana", "command": "x"}, "schedule"),
    (
        {"name": "n", "schedule": "* * * * *", "timezone": "Mars/Olympus", "command": "x"},
        "timezone",
    ),
    ({"name": "n", "schedule": "* * * * *"}, "command"),
    ({"name": "n", "schedule": "* * * * *", "command": ""}, "command"),
    ({"name": "n", "schedule": "* * * * *", "command": 5}, "command"),
    ({"name": "n", "schedule": "* * * * *", "command": "x", "timeout": -1}, "timeout"),
    ({"name": "n", "schedule": "* * * * *", "command": "x", "timeout": "forever"}, "timeout"),
    ({"name": "n", "schedule": "* * * * *", "command": "x", "timeout": 10**9}, "timeout"),
    ({"name": "n", "schedule": "* * * * *", "command": "x", "max_retries": -1}, "max_retries"),
    ({"name": "n", "schedule": "* * * * *", "command": "x", "max_retries": "3"}, "max_retries"),
    ({"name": "n", "schedule": "* * * * *", "command": "x", "args": "a b"}, "args"),
    ({"name": "n", "schedule": "* * * * *", "command": "x", "env": {"A": 1}}, "env.A"),
    ({"name": "n", "schedule": "* * * * *", "command": "x", "env": {"1A": "x"}}, "env.1A"),
    ({"name": "n", "schedule": "* * * * *", "command": "x", "paused": "yes"}, "paused"),
    ({"name": "n", "schedule": "* * * * *", "command": "x", "colour": "red"}, "colour"),
    ({"name": "has space", "schedule": "* * * * *", "command": "x"}, "name"),
    ({"name": "12345", "schedule": "* * * * *", "command": "x"}, "name"),
    (
        {"name": "n", "schedule": "* * * * *", "command": "x", "retry_backoff": "-5s"},
        "retry_backoff",
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_JOBS)
def test_bad_job_input_is_a_400_naming_the_field(base: str, body: dict, field: str) -> None:
    status, reply = api("POST", base, "/api/v1/jobs", body)
    assert status == 400, reply
    assert reply["error"]["field"] == field
    assert field.split(".")[0] in reply["error"]["message"]


def test_nothing_is_half_written_by_a_rejected_request(base: str) -> None:
    name = unique("half")
    api("POST", base, "/api/v1/jobs", {"name": name, "schedule": "61 * * * *", "command": "x"})
    status, listing = api("GET", base, f"/api/v1/jobs?q={name}")
    assert listing["items"] == []
    status, job = api("POST", base, "/api/v1/jobs", job_body(name=name))
    status, _ = api("PATCH", base, f"/api/v1/jobs/{job['id']}", {"command": "y", "timeout": -1})
    assert status == 400
    status, same = api("GET", base, f"/api/v1/jobs/{job['id']}")
    assert same["command"] == "echo hi" and same["version"] == job["version"]


def test_duplicate_name_is_409(base: str) -> None:
    body = job_body()
    assert api("POST", base, "/api/v1/jobs", body)[0] == 201
    status, reply = api("POST", base, "/api/v1/jobs", body)
    assert status == 409 and reply["error"]["field"] == "name"
    status, other = api("POST", base, "/api/v1/jobs", job_body())
    status, reply = api("PATCH", base, f"/api/v1/jobs/{other['id']}", {"name": body["name"]})
    assert status == 409


def test_malformed_json_oversized_body_and_unknown_ids(base: str) -> None:
    import urllib.request

    req = urllib.request.Request(
        base + "/api/v1/jobs",
        data=b"{not json",
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("expected 400")
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
        assert b"malformed JSON" in exc.read()
    status, reply = api("POST", base, "/api/v1/jobs", job_body(description="x" * 2_000_000))
    assert status == 413 and reply["error"]["code"] == "body_too_large"
    assert api("POST", base, "/api/v1/jobs", [1, 2])[0] == 400
    assert api("GET", base, "/api/v1/jobs/999999999")[0] == 404
    assert api("GET", base, "/api/v1/runs/999999999")[0] == 404
    assert api("GET", base, "/api/v1/runs/abc")[0] == 400
    assert api("POST", base, "/api/v1/jobs/999999999/trigger")[0] == 404
    assert api("GET", base, "/api/v1/runs?limit=0")[0] == 400
    assert api("GET", base, "/api/v1/runs?status=bogus")[0] == 400
    assert api("GET", base, "/api/v1/runs?since=yesterday")[0] == 400
    assert api("GET", base, "/api/v1/runs?since=2026-01-01T00:00:00")[0] == 400
    assert api("GET", base, "/api/v1/nope")[0] == 404


def test_cluster_health_ready_and_metrics(shared_cluster: LocalCluster) -> None:
    for name in shared_cluster.controller_names:
        base = shared_cluster.url(name)
        status, info = api("GET", base, "/api/v1/cluster")
        assert status == 200
        assert info["node"]["id"] == name and info["node"]["pid"] == shared_cluster.nodes[name].pid
        assert info["node"]["version"]
        assert info["leader"]["node_id"] == shared_cluster.leader()
        assert info["epoch"] >= 1 and len(info["peers"]) == 2
        assert {w["id"] for w in info["workers"]} >= {"w1", "w2"}
        assert api("GET", base, "/healthz")[0] == 200
        assert api("GET", base, "/readyz")[0] == 200
        status, text = http_json("GET", base + "/metrics")
        assert status == 200 and "chronoraft_leader" in text
    status, text = http_json("GET", shared_cluster.url("w1") + "/metrics")
    assert status == 200 and "chronoraft_worker" in text
