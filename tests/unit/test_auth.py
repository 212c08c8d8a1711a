"""API authentication: token configuration, the access rule, and the middleware's answers.

The middleware runs in a real aiohttp server built by create_app; only requests that are
decided before any handler touches PostgreSQL are sent, so no database is needed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from common.settings import Settings
from controller.api import access, openapi
from controller.api.app import create_app
from controller.api.auth import (
    ApiAuth,
    AuthConfigError,
    bearer,
    parse_env_tokens,
    parse_token_file,
)
from controller.metrics import ControllerMetrics

ADMIN = "admin-secret-0123456789"
READER = "reader-secret-0123456789"
TOKENS = (f"ops:admin:{ADMIN}", f"grafana:read:{READER}")


class NoCluster:
    def node_info(self) -> dict[str, Any]:
        raise AssertionError("not called by these tests")

    def raft_known(self) -> bool:
        return True


class NoPool:
    """Any handler that gets as far as the database fails the test loudly."""

    def connection(self) -> Any:
        raise AssertionError("a refused request reached the database")


@contextlib.asynccontextmanager
async def client(**settings: Any) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(
        Settings(**{"api_tokens": TOKENS, **settings}),
        cast(Any, NoPool()),
        ControllerMetrics(),
        NoCluster(),
    )
    test_client: TestClient[Any, Any] = TestClient(TestServer(app))
    await test_client.start_server()
    try:
        yield test_client
    finally:
        await test_client.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ----- configuration -----


def test_env_tokens_are_name_role_secret_and_the_secret_may_hold_colons() -> None:
    tokens = parse_env_tokens(["ops:admin:abc:def:0123456789abcdef", f"g:read:{READER}"])
    assert [(t.name, t.role) for t in tokens] == [("ops", "admin"), ("g", "read")]
    assert tokens[0].digest == hashlib.sha256(b"abc:def:0123456789abcdef").digest()


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("ops:admin", "name:role:secret"),
        ("ops:root:0123456789abcdef", "role 'root'"),
        ("ops:admin:short", "at least 16"),
        ("bad name:read:0123456789abcdef", "token name"),
    ],
)
def test_bad_env_tokens_are_refused_naming_the_problem(entry: str, complaint: str) -> None:
    with pytest.raises(AuthConfigError, match=complaint):
        parse_env_tokens([entry])


def test_token_file_holds_hashes_with_comments(tmp_path: Path) -> None:
    digest = hashlib.sha256(ADMIN.encode()).hexdigest()
    text = f"# who may write\n\nops admin sha256:{digest}  # rotated 2026-11\n"
    tokens = parse_token_file(text, "tokens.txt")
    assert [(t.name, t.role, t.digest.hex()) for t in tokens] == [("ops", "admin", digest)]
    with pytest.raises(AuthConfigError, match=r"tokens.txt:2: the hash"):
        parse_token_file(f"ops admin sha256:{digest}\nx read md5:abc\n", "tokens.txt")
    with pytest.raises(AuthConfigError, match=r"t:1: expected"):
        parse_token_file("ops admin\n", "t")


def test_file_and_env_tokens_are_combined_and_names_must_be_unique(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"ci admin sha256:{hashlib.sha256(b'ci-secret-0123456789').hexdigest()}\n")
    auth_ = ApiAuth.from_settings(Settings(api_tokens=TOKENS, api_tokens_file=str(path)))
    assert auth_.identify("ci-secret-0123456789").name == "ci"  # type: ignore[union-attr]
    assert auth_.identify(READER).role == "read"  # type: ignore[union-attr]
    assert auth_.identify("ci-secret-012345678") is None
    path.write_text(f"ops read sha256:{'0' * 64}\n")
    with pytest.raises(AuthConfigError, match="configured twice"):
        ApiAuth.from_settings(Settings(api_tokens=TOKENS, api_tokens_file=str(path)))
    with pytest.raises(AuthConfigError, match="CHRONORAFT_API_TOKENS_FILE"):
        ApiAuth.from_settings(Settings(api_tokens_file=str(tmp_path / "missing")))


def test_no_token_refuses_to_build_the_app_unless_insecure_dev() -> None:
    pieces = (cast(Any, NoPool()), ControllerMetrics(), NoCluster())
    with pytest.raises(AuthConfigError, match="--insecure-dev"):
        create_app(Settings(), *pieces)
    assert create_app(Settings(insecure_dev=True), *pieces) is not None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Basic b3BzOnB3", None),
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
    ],
)
def test_only_bearer_headers_carry_a_token(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


# ----- the access rule -----


@pytest.mark.parametrize(
    ("method", "route", "protect_ops", "needed"),
    [
        ("GET", "/api/v1/jobs", False, "read"),
        ("HEAD", "/api/v1/jobs/{ref}", False, "read"),
        ("POST", "/api/v1/jobs", False, "admin"),
        ("PATCH", "/api/v1/jobs/{ref}", False, "admin"),
        ("DELETE", "/api/v1/jobs/{ref}", False, "admin"),
        ("POST", "/api/v1/some/future/endpoint", False, "admin"),
        ("GET", "/api/v1/audit", False, "admin"),
        ("GET", None, False, "read"),
        ("POST", None, False, "admin"),
        ("GET", "/healthz", False, None),
        ("GET", "/metrics", False, None),
        ("GET", "/metrics", True, "read"),
        ("GET", "/readyz", True, "read"),
        ("GET", "/", True, None),
        ("GET", "/static/{asset}", True, None),
        ("GET", openapi.OPENAPI_PATH, True, None),
        ("GET", openapi.DOCS_PATH + "/{asset}", True, None),
    ],
)
def test_reads_need_read_writes_and_audit_need_admin_public_routes_nothing(
    method: str, route: str | None, protect_ops: bool, needed: str | None
) -> None:
    assert access.needed_role(method, route, protect_ops=protect_ops) == needed


def test_the_openapi_routes_the_rule_opens_are_the_served_ones() -> None:
    assert {openapi.OPENAPI_PATH, openapi.DOCS_PATH} <= access.PUBLIC_ROUTES


def test_the_document_says_which_role_each_operation_needs() -> None:
    doc = openapi.build_document()
    paths = doc["paths"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert {"401", "403"} <= set(paths["/api/v1/jobs"]["post"]["responses"])
    assert "401" in paths["/api/v1/jobs"]["get"]["responses"]
    assert "403" not in paths["/api/v1/jobs"]["get"]["responses"]
    assert {"401", "403"} <= set(paths["/api/v1/audit"]["get"]["responses"])
    assert paths["/healthz"]["get"]["security"] == []
    assert paths[openapi.OPENAPI_PATH]["get"]["security"] == []


# ----- the middleware's answers -----


async def test_no_token_or_an_unknown_one_is_401_with_a_bearer_challenge() -> None:
    async with client() as c:
        for headers in ({}, auth("not-a-token"), {"Authorization": f"Basic {ADMIN}"}):
            resp = await c.get("/api/v1/runs/1", headers=headers)
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            body = await resp.json()
            assert body["error"]["code"] == "unauthorized"
            assert body["error"]["field"] == "authorization"


async def test_a_read_token_may_read_but_a_write_is_403() -> None:
    async with client() as c:
        resp = await c.get("/api/v1/runs/abc", headers=auth(READER))
        assert resp.status == 400  # past authentication, into the handler's validation
        resp = await c.post("/api/v1/jobs", json={}, headers=auth(READER))
        assert resp.status == 403
        body = await resp.json()
        assert body["error"]["code"] == "forbidden" and "needs admin" in body["error"]["message"]
        resp = await c.get("/api/v1/audit", headers=auth(READER))
        assert resp.status == 403


async def test_an_admin_token_may_write() -> None:
    async with client() as c:
        resp = await c.post("/api/v1/jobs", json={"name": "x"}, headers=auth(ADMIN))
        assert resp.status == 400  # validation, not authentication, answered
        assert (await resp.json())["error"]["field"] == "schedule"


async def test_probes_docs_and_the_dashboard_are_open_unless_ops_are_protected() -> None:
    async with client() as c:
        for path in ("/healthz", openapi.OPENAPI_PATH, openapi.DOCS_PATH, "/"):
            resp = await c.get(path)
            assert resp.status == 200, path
    async with client(protect_ops_endpoints=True) as c:
        assert (await c.get("/healthz")).status == 401
        assert (await c.get("/healthz", headers=auth(READER))).status == 200
        assert (await c.get("/")).status == 200


async def test_unknown_routes_need_a_token_before_they_answer_404() -> None:
    async with client() as c:
        assert (await c.get("/api/v1/nope")).status == 401
        assert (await c.get("/api/v1/nope", headers=auth(READER))).status == 404
        # A path that only looks like a public one borrows nothing.
        assert (await c.get("/static/../api/v1/runs/1")).status == 401
        assert (await c.post("/healthz")).status == 401


async def test_insecure_dev_without_tokens_leaves_the_api_open() -> None:
    async with client(api_tokens=(), insecure_dev=True) as c:
        resp = await c.post("/api/v1/jobs", json={"name": "x"})
        assert resp.status == 400
