"""The OpenAPI document describes exactly the routes the controller serves, and what they send.

Routes are read from the router that create_app builds; no PostgreSQL is needed: handlers
that are called get a fake pool and monkeypatched repository functions.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from common import jobspec
from common.catchup import CatchupMode
from common.durations import DurationError, parse_duration
from common.errors import ValidationError
from common.repo import jobs as jobs_repo
from common.repo import leadership
from common.repo import runs as runs_repo
from common.repo import workers as workers_repo
from common.settings import Settings
from common.states import OverlapPolicy, RunState
from controller.api import jobs as jobs_api
from controller.api import openapi
from controller.api.app import create_app
from controller.api.params import page
from controller.api.serialize import job_json, run_json, worker_json
from controller.metrics import ControllerMetrics

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class FakeCluster:
    def node_info(self) -> dict[str, Any]:
        return {
            "node": {
                "id": "c1",
                "role": "leader",
                "pid": 4242,
                "version": "0.1.0",
                "started_at": "2026-11-23T10:00:00Z",
                "http": "http://127.0.0.1:8080",
                "grpc": "127.0.0.1:9090",
                "raft": "127.0.0.1:7000",
                "leading_epoch": 3,
            },
            "raft": {"role": "leader", "term": 3, "leader": "127.0.0.1:7000", "has_quorum": True},
            "peers": [{"raft": "127.0.0.1:7001", "connected": True}],
        }

    def raft_known(self) -> bool:
        return True


class FakeConnection:
    async def execute(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def set_autocommit(self, value: bool) -> None:  # common.db.reading
        return None


class FakePool:
    """Hands out a connection that does nothing; the repository functions are patched."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[FakeConnection]:
        if self.fail:
            raise OSError("connection refused")
        yield FakeConnection()


def make_app(pool: FakePool | None = None) -> web.Application:
    settings = Settings(insecure_dev=True)  # no tokens: the API is open (auth has its own tests)
    return create_app(settings, cast(Any, pool or FakePool()), ControllerMetrics(), FakeCluster())


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi.build_document()


def router_operations(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route, without the HEAD twin aiohttp adds to a GET."""
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    return {
        (method, path)
        for method, path in routes
        if not (method == "HEAD" and ("GET", path) in routes)  # allow_head=True twins
    }


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def resolve(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def walk_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from walk_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_refs(value)


# ----- the document matches the router -----


def test_every_route_is_documented_and_every_documented_route_exists(
    doc: dict[str, Any],
) -> None:
    served = router_operations(make_app())
    documented = documented_operations(doc)
    assert served - documented == set(), "routes missing from controller/api/openapi.py"
    assert documented - served == set(), "documented routes the router does not serve"
    assert ("GET", openapi.OPENAPI_PATH) in served and ("GET", openapi.DOCS_PATH) in served


def test_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)


def test_every_operation_has_responses_and_declares_its_path_parameters(
    doc: dict[str, Any],
) -> None:
    ids = []
    for path, item in doc["paths"].items():
        in_path = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            assert op["responses"], f"{method} {path} has no responses"
            assert all(re.fullmatch(r"[1-5]\d\d", s) for s in op["responses"]), (method, path)
            params = [resolve(doc, p) for p in op.get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == in_path, f"{method} {path}: path parameters {declared}"
            ids.append(op["operationId"])
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    refs = set(walk_refs(doc))
    assert refs
    for target in refs:
        assert target.startswith("#/components/"), target
        try:
            assert isinstance(resolve(doc, {"$ref": target}), dict), target
        except KeyError:
            pytest.fail(f"$ref {target} does not resolve")


def test_write_operations_document_their_error_statuses(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    assert {"400", "409", "413", "503"} <= set(paths["/api/v1/jobs"]["post"]["responses"])
    assert {"400", "404", "409", "413"} <= set(paths["/api/v1/jobs/{ref}"]["patch"]["responses"])
    assert {"404", "409"} <= set(paths["/api/v1/runs/{id}/cancel"]["post"]["responses"])
    error = resolve(doc, paths["/api/v1/jobs"]["post"]["responses"]["400"])
    schema = resolve(doc, error["content"]["application/json"]["schema"])
    assert set(schema["properties"]["error"]["properties"]) == {"code", "message", "field"}


# ----- the document matches the validation rules -----


def test_job_body_lists_every_jobspec_field_with_its_enums(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    create, patch = schemas["JobCreate"], schemas["JobPatch"]
    assert set(create["properties"]) == jobspec.FIELDS == set(patch["properties"])
    assert create["required"] == sorted(jobspec.REQUIRED) and "required" not in patch
    assert create["additionalProperties"] is False and patch["additionalProperties"] is False
    overlap = create["properties"]["overlap"]["enum"]
    assert set(overlap) == {p.value for p in OverlapPolicy} | {"forbid", "replace"}
    assert create["properties"]["catchup"]["enum"] == [m.value for m in CatchupMode]
    assert schemas["Run"]["properties"]["state"]["enum"] == [s.value for s in RunState]
    assert set(schemas["Job"]["properties"]) >= jobspec.FIELDS


def test_example_job_body_is_accepted_by_the_validator(doc: dict[str, Any]) -> None:
    example = doc["components"]["schemas"]["JobCreate"]["example"]
    cols = jobspec.validate_job(example)
    assert cols["name"] == example["name"]


@pytest.mark.parametrize(
    "text", ["30", "1.5", ".5", "90s", "5m", "1h30m", "250ms", "1d", "1m0.1s", "x", "5 m", "1H"]
)
def test_duration_pattern_agrees_with_the_parser(text: str) -> None:
    try:
        parse_duration(text, "timeout")
        accepted = True
    except DurationError:
        accepted = False
    assert bool(re.search(openapi.DURATION_PATTERN, text)) == accepted


def test_documented_limits_match_the_handlers() -> None:
    assert jobs_api.MAX_BACKFILL_SLOTS == openapi.BACKFILL_MAX_SLOTS
    assert page(make_mocked_request("GET", "/")) == (openapi.PAGE_LIMIT_DEFAULT, 0)
    limit = openapi.PAGE_LIMIT_MAX
    assert page(make_mocked_request("GET", f"/?limit={limit}"))[0] == limit
    with pytest.raises(ValidationError):
        page(make_mocked_request("GET", f"/?limit={limit + 1}"))
    offset = openapi.PAGE_OFFSET_MAX
    assert page(make_mocked_request("GET", f"/?offset={offset}"))[1] == offset
    with pytest.raises(ValidationError):
        page(make_mocked_request("GET", f"/?offset={offset + 1}"))


# ----- what the handlers send matches the document -----


def job_row(**extra: Any) -> dict[str, Any]:
    cols = jobspec.validate_job(
        {"name": "backup", "schedule": "*/30 * * * * *", "command": "echo", "args": ["a"]}
    )
    return {
        **cols,
        "id": 7,
        "next_fire_at": T0,
        "version": 1,
        "missed_count": 0,
        "skipped_overlap_count": 0,
        "buffer_dropped_count": 0,
        "created_at": T0,
        "updated_at": T0,
        **extra,
    }


def run_row() -> dict[str, Any]:
    return {
        "id": 1,
        "job_id": 7,
        "job_name": "backup",
        "trigger": "schedule",
        "state": "succeeded",
        "late": False,
        "attempt": 2,
        "max_retries": 2,
        "worker_id": "w1",
        "epoch": 3,
        "exit_code": 0,
        "output_truncated": False,
        "error": None,
        "scheduled_for": T0,
        "created_at": T0,
        "dispatched_at": T0,
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=1.5),
        "output": "done\n",
        "cancel_requested": False,
        "attempts": [
            {
                "attempt": n,
                "worker_id": "w1",
                "epoch": 3,
                "state": state,
                "dispatched_at": T0,
                "started_at": T0,
                "finished_at": None,
                "exit_code": None,
                "output": None,
                "output_truncated": False,
                "error": "exit 1" if state == "failed" else None,
            }
            for n, state in ((1, "failed"), (2, "succeeded"))
        ],
    }


def worker_row(alive: bool = True, allowed_commands: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": "w1",
        "address": "127.0.0.1:50051",
        "labels": {"region": "eu"},
        "capacity": 4,
        "running": 1,
        "version": "0.1.0",
        "draining": False,
        "allowed_commands": allowed_commands,
        "alive": alive,
        "registered_at": T0,
        "last_heartbeat": T0,
    }


def undocumented_keys(doc: dict[str, Any], schema: Any, value: Any, at: str = "") -> list[str]:
    """Keys a response carries that its schema does not name (validators allow extras)."""
    schema = resolve(doc, schema)
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        found += [f"{at}.{k}" for k in value if k not in props]
        for key, item in value.items():
            if key in props:
                found += undocumented_keys(doc, props[key], item, f"{at}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            found += undocumented_keys(doc, schema["items"], item, f"{at}[]")
    return found


def check_against(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    oas = pytest.importorskip("openapi_schema_validator")
    oas.OAS30Validator({**schema, "components": doc["components"]}).validate(value)
    assert undocumented_keys(doc, schema, value) == []


def check_response(doc: dict[str, Any], method: str, path: str, status: int, body: Any) -> None:
    response = resolve(doc, doc["paths"][path][method.lower()]["responses"][str(status)])
    check_against(doc, response["content"]["application/json"]["schema"], body)


def test_serialized_job_run_and_worker_match_their_schemas(doc: dict[str, Any]) -> None:
    ref = openapi.ref
    check_against(doc, ref("Job"), job_json(job_row()))
    listed = job_row(last_run_id=1, last_run_state="succeeded", last_run_finished_at=T0)
    check_against(doc, ref("Job"), job_json(listed))
    check_against(doc, ref("Job"), job_json(job_row(paused=True, last_run_id=None)))
    check_against(doc, ref("Run"), run_json(run_row()))
    check_against(doc, ref("RunDetail"), run_json(run_row(), full=True))
    check_against(doc, ref("Worker"), worker_json(worker_row()))
    strict = worker_json(worker_row(allowed_commands=["/bin/echo", "true"]))
    check_against(doc, ref("Worker"), strict)
    assert strict["allowed_commands"] == ["/bin/echo", "true"]
    assert worker_json(worker_row())["allowed_commands"] is None


@pytest.fixture
def fake_repos(monkeypatch: pytest.MonkeyPatch) -> None:
    async def list_jobs(conn: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], int]:
        row = job_row(last_run_id=1, last_run_state="running", last_run_finished_at=None)
        return [row], 1

    async def list_runs(conn: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], int, bool]:
        return [run_row()], 1, True

    async def get_run(conn: Any, run_id: int) -> dict[str, Any]:
        return run_row()

    async def current(conn: Any) -> dict[str, Any]:
        return {"epoch": 3, "node_id": "c1", "since": T0}

    async def timeline(conn: Any, limit: int = 50) -> list[dict[str, Any]]:
        return [{"epoch": 3, "node_id": "c1", "claimed_at": T0}]

    async def all_workers(conn: Any, lease: float) -> list[dict[str, Any]]:
        return [worker_row(), worker_row(alive=False, allowed_commands=["echo"])]

    monkeypatch.setattr(jobs_repo, "list_jobs", list_jobs)
    monkeypatch.setattr(runs_repo, "list_runs", list_runs)
    monkeypatch.setattr(runs_repo, "get", get_run)
    monkeypatch.setattr(leadership, "current", current)
    monkeypatch.setattr(leadership, "timeline", timeline)
    monkeypatch.setattr(workers_repo, "all_workers", all_workers)


@contextlib.asynccontextmanager
async def client_for(app: web.Application) -> AsyncIterator[TestClient[Any, Any]]:
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.usefixtures("fake_repos")
async def test_handler_responses_match_the_document(doc: dict[str, Any]) -> None:
    cases = [
        ("GET", "/api/v1/jobs", "/api/v1/jobs", 200),
        ("GET", "/api/v1/runs?status=succeeded", "/api/v1/runs", 200),
        ("GET", "/api/v1/runs/1", "/api/v1/runs/{id}", 200),
        ("GET", "/api/v1/cluster", "/api/v1/cluster", 200),
        ("GET", "/api/v1/workers", "/api/v1/workers", 200),
        ("GET", "/healthz", "/healthz", 200),
        ("GET", "/readyz", "/readyz", 200),
        ("GET", "/api/v1/runs/abc", "/api/v1/runs/{id}", 400),
        ("GET", "/api/v1/runs?since=yesterday", "/api/v1/runs", 400),
        ("POST", "/api/v1/jobs", "/api/v1/jobs", 400),
    ]
    async with client_for(make_app()) as client:
        for method, url, path, status in cases:
            resp = await client.request(method, url, data=b"[]")
            assert resp.status == status, (method, url, await resp.text())
            check_response(doc, method, path, status, await resp.json())


async def test_outage_answers_match_the_document(doc: dict[str, Any]) -> None:
    async with client_for(make_app(FakePool(fail=True))) as client:
        resp = await client.get("/readyz")
        assert resp.status == 503
        check_response(doc, "GET", "/readyz", 503, await resp.json())


# ----- the document and Swagger UI are served, without network -----


async def test_openapi_json_and_swagger_ui_are_served(doc: dict[str, Any]) -> None:
    async with client_for(make_app()) as client:
        resp = await client.get(openapi.OPENAPI_PATH)
        assert resp.status == 200 and await resp.json() == doc

        resp = await client.get(openapi.DOCS_PATH)
        assert resp.status == 200 and resp.content_type == "text/html"
        page_html = await resp.text()
        assert 'url: "v1/openapi.json"' in page_html  # relative to /api/docs
        assert "//" not in page_html.replace("<!doctype", "")  # nothing loaded from elsewhere

        resp = await client.get(openapi.DOCS_PATH + "/", allow_redirects=False)
        assert resp.status == 301 and resp.headers["Location"] == openapi.DOCS_PATH

        if openapi.swagger_ui_dir() is None:
            pytest.skip("swagger-ui-bundle is not installed")
        for asset in re.findall(r'(?:src|href)="docs/([^"]+)"', page_html):
            resp = await client.get(f"{openapi.DOCS_PATH}/{asset}")
            assert resp.status == 200, asset
            assert len(await resp.read()) > 0, asset


@pytest.mark.parametrize("name", ["nope.js", "..", "%2e%2e%2fopenapi.py", "%2Fetc%2Fpasswd"])
async def test_docs_assets_refuse_unknown_names(doc: dict[str, Any], name: str) -> None:
    async with client_for(make_app()) as client:
        resp = await client.get(f"{openapi.DOCS_PATH}/{name}")
        assert resp.status == 404
