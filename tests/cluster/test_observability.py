"""Every metric README documents is exported by a live controller or worker (and nothing
undocumented is), and JSON log lines carry node, epoch, run_id and job_id."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.local_cluster import LocalCluster, http_json
from tests.conftest import _dump_logs, build_cluster, new_database
from tests.helpers import all_runs, api, unique, wait_until

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(chronoraft_\w+)` \| (\w+) \|[^|]*\| (controller|worker) \|", re.M)


def documented() -> dict[str, tuple[str, str]]:
    """name -> (type, process) from README's metrics table."""
    readme = (ROOT / "README.md").read_text()
    return {m[0]: (m[1], m[2]) for m in ROW.findall(readme)}


@pytest.fixture(scope="module")
def busy_cluster(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalCluster, dict[str, Any]]]:
    """A cluster logging JSON, with a job that has run a few times."""
    cluster = build_cluster(
        tmp_path_factory.mktemp("observability"),
        new_database(pg_admin_url),
        workers=1,
        # Per-run lines (run dispatched, attempt started) are DEBUG: off the hot path by default.
        extra_env={"CHRONORAFT_LOG_FORMAT": "json", "CHRONORAFT_LOG_LEVEL": "DEBUG"},
    )
    try:
        cluster.start_all()
        leader = cluster.wait_ready(timeout=90)
        base = cluster.url(leader)
        status, job = api(
            "POST", base, "/api/v1/jobs",
            {"name": unique("observed"), "schedule": "@every 1s", "command": "echo observed"},
        )  # fmt: skip
        assert status == 201, job
        wait_until(
            "three successful runs",
            lambda: sum(r["state"] == "succeeded" for r in all_runs(base, job["id"])) >= 3,
            timeout=30,
        )
        api("POST", base, f"/api/v1/jobs/{job['id']}/pause")
        yield cluster, job
    finally:
        cluster.stop_all()
        _dump_logs(cluster, "observability")


def scrape(url: str) -> dict[str, Any]:
    status, text = http_json("GET", url + "/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(text)}, text


def exported_names(text: str) -> set[str]:
    """Names as README writes them (counters with _total), without prometheus_client's
    automatic ``*_created`` companions."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    return {
        name
        for name in types
        if not (name.endswith("_created") and name.removesuffix("_created") + "_total" in types)
        and not (name.endswith("_created") and name.removesuffix("_created") in types)
    }


def sample(families: dict[str, Any], family: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name in (family, family + "_total") and all(
            s.labels.get(k) == v for k, v in labels.items()
        ):
            return s.value
    raise AssertionError(f"no sample {family}{labels}")


def _sample_or_zero(families: dict[str, Any], family: str, **labels: str) -> float:
    """A labelled counter has no sample until that label is first counted."""
    try:
        return sample(families, family, **labels)
    except AssertionError:
        return 0.0


def test_every_documented_metric_is_exported_and_every_exported_one_documented(
    busy_cluster: tuple[LocalCluster, dict[str, Any]],
) -> None:
    cluster, _ = busy_cluster
    docs = documented()
    assert len(docs) >= 20, "README's metrics table was not found"
    leader = cluster.leader()
    assert leader is not None
    # A scrape reads liveness as it is at that moment; on a loaded machine a heartbeat can
    # lapse for a while, which is not what this test is about.
    families, text = wait_until(
        "a leader scrape that sees the worker alive",
        lambda: _with_worker_alive(scrape(cluster.url(leader))),
        timeout=30,
    )
    worker_families, worker_text = scrape(cluster.url("w1"))
    exported = {
        "controller": exported_names(text),
        "worker": exported_names(worker_text),
    }
    for process in ("controller", "worker"):
        wanted = {n for n, (_, p) in docs.items() if p == process}
        assert wanted - exported[process] == set(), f"{process}: documented but not exported"
        assert exported[process] - wanted == set(), f"{process}: exported but not documented"
        types = dict(
            re.findall(
                r"^# TYPE (\S+) (\S+)$", text if process == "controller" else worker_text, re.M
            )
        )
        for name in wanted:
            assert types[name] == docs[name][0], f"{name}: README says {docs[name][0]}"

    assert sample(families, "chronoraft_leader") == 1
    assert sample(families, "chronoraft_epoch") == sample(families, "chronoraft_cluster_epoch") >= 1
    assert sample(families, "chronoraft_slots", action="fire") >= 3
    # A worker reports to whichever controller answered it last, not necessarily the leader:
    # each controller counts the results it stored.
    recorded = sum(
        _sample_or_zero(scrape(cluster.url(name))[0], "chronoraft_results", outcome="recorded")
        for name in cluster.controller_names
    )
    assert recorded >= 3
    assert runs_gauge_states(families) == {"waiting", "pending", "dispatched", "running"}
    assert sample(families, "chronoraft_workers", status="alive") == 1
    assert sample(families, "chronoraft_fleet_capacity", worker="w1") == 4
    assert sample(families, "chronoraft_db_up") == 1
    assert sample(worker_families, "chronoraft_worker_tasks_started") >= 3
    follower = next(n for n in cluster.controller_names if n != leader)
    follower_families, _ = scrape(cluster.url(follower))
    assert sample(follower_families, "chronoraft_leader") == 0
    # Read from PostgreSQL, so a follower reports the queue too.
    assert runs_gauge_states(follower_families) == {"waiting", "pending", "dispatched", "running"}


def _with_worker_alive(scraped: tuple[dict[str, Any], str]) -> tuple[dict[str, Any], str] | None:
    families, _ = scraped
    alive = [s for s in families["chronoraft_workers"].samples if s.labels["status"] == "alive"]
    return scraped if alive and alive[0].value == 1 else None


def runs_gauge_states(families: dict[str, Any]) -> set[str]:
    """The states ``chronoraft_runs`` reports: the unfinished ones, never the history's."""
    return {s.labels["state"] for s in families["chronoraft_runs"].samples}


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def test_json_logs_carry_node_epoch_run_and_job(
    busy_cluster: tuple[LocalCluster, dict[str, Any]],
) -> None:
    cluster, job = busy_cluster
    by_node = {name: json_lines(node.log_path) for name, node in cluster.nodes.items()}
    for name, lines in by_node.items():
        assert lines, f"{name} wrote no JSON log line"
        for line in lines:
            assert line["node"] == name and line["ts"].endswith("Z") and line["level"], line
    controller_lines = [line for n in cluster.controller_names for line in by_node[n]]
    dispatched = [line for line in controller_lines if line["msg"] == "run dispatched"]
    assert dispatched and all(
        isinstance(line["epoch"], int) and isinstance(line["run_id"], int) for line in dispatched
    )
    started = [line for line in by_node["w1"] if line["msg"].startswith("attempt started")]
    assert started
    for line in started:
        assert line["job_id"] == job["id"] and line["epoch"] >= 1 and line["run_id"] >= 1
