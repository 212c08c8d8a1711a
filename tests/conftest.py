"""Shared fixtures: a throwaway PostgreSQL for the session, a fresh database per test,
and real local clusters (controller and worker processes) built with LocalCluster.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from common import db
from common.pgserver import PgServer
from controller.local_cluster import LocalCluster, free_port_block
from tests.helpers import ADMIN_TOKEN

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
_db_counter = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _client_token() -> Iterator[None]:
    """Raw ``http_json`` calls read CHRONORAFT_TOKEN, like the CLI: the clusters' admin token."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CHRONORAFT_TOKEN", ADMIN_TOKEN)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Superuser URL of the session's PostgreSQL (private unless CHRONORAFT_TEST_ADMIN_URL)."""
    external = os.environ.get("CHRONORAFT_TEST_ADMIN_URL")
    if external:
        yield external
        return
    server = PgServer.create()
    server.start()
    admin = server.url.rsplit("/", 1)[0] + "/postgres"
    yield admin
    server.destroy()


def new_database(admin_url: str) -> str:
    name = f"t{os.getpid()}_{next(_db_counter)}_{int(time.time() * 1000) % 100000}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    db.migrate(url)
    return url


@pytest.fixture
def database_url(pg_admin_url: str) -> str:
    """A new, migrated database for one test."""
    return new_database(pg_admin_url)


def _dump_logs(cluster: LocalCluster, label: str) -> None:
    out = ARTIFACTS / "logs" / label
    out.mkdir(parents=True, exist_ok=True)
    for name, node in cluster.nodes.items():
        if node.log_path.exists():
            (out / f"{name}.log").write_bytes(node.log_path.read_bytes())


def build_cluster(base_dir: Path, database_url: str, **kwargs: object) -> LocalCluster:
    controllers = int(kwargs.pop("controllers", 3))  # type: ignore[arg-type]
    workers = int(kwargs.pop("workers", 2))  # type: ignore[arg-type]
    kwargs.setdefault("admin_token", ADMIN_TOKEN)
    base = free_port_block(40)
    return LocalCluster(
        base_dir=base_dir,
        database_url=database_url,
        controllers=controllers,
        workers=workers,
        http_base=base,
        raft_base=base + 5,
        grpc_base=base + 10,
        worker_base=base + 15,
        worker_http_base=base + 25,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def shared_cluster(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """One long-lived cluster for API tests that do not break anything."""
    cluster = build_cluster(tmp_path_factory.mktemp("shared"), new_database(pg_admin_url))
    cluster.start_all()
    try:
        cluster.wait_ready(timeout=90)
        yield cluster
    finally:
        cluster.stop_all()
        _dump_logs(cluster, "shared")


@pytest.fixture
def make_cluster(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[Callable[..., LocalCluster]]:
    """Factory for a per-test cluster on the test's own database; always torn down."""
    made: list[LocalCluster] = []

    def factory(**kwargs: object) -> LocalCluster:
        cluster = build_cluster(tmp_path / f"cluster{len(made)}", database_url, **kwargs)
        made.append(cluster)
        cluster.start_all()
        cluster.wait_ready(timeout=90)
        return cluster

    yield factory
    for cluster in made:
        cluster.stop_all()
        _dump_logs(cluster, request.node.name)
