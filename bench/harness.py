"""The benchmark's world: one private PostgreSQL for the whole run, fresh clusters on it.

Every benchmark gets its own database on the SAME server (so pgbench, APScheduler and
chronoraft all measure one PostgreSQL) and its own LocalCluster on ports from
``free_port_block`` (so a test run on the same machine does not collide). Everything is
torn down in ``finally`` blocks: a benchmark that fails, times out or is interrupted still
stops its processes and the server.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from common import db
from common.pgserver import PgServer
from controller.local_cluster import ClusterError, LocalCluster, free_port_block, http_json

PORTS_PER_CLUSTER = 40
"""http 0-4, raft 5-9, controller gRPC 10-14, worker gRPC 15-26, worker http 27-38."""
MAX_WORKERS = 12
START_ATTEMPTS = 3


def progress(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the result tables."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


class BenchTimeout(Exception):
    """A benchmark ran past its time budget (raised from SIGALRM in the main thread)."""


@contextmanager
def time_budget(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`BenchTimeout` in the main thread if the block runs past ``seconds``."""

    def expired(signum: int, frame: Any) -> None:
        raise BenchTimeout(f"{what} ran past its budget of {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class BenchEnv:
    """Shared by all benchmarks of one run; ``results`` lets later ones cite earlier ones
    (end-to-end rates as a fraction of the bare spawn rate measured by ``limits``)."""

    base_dir: Path
    pg: PgServer
    log_level: str = "WARNING"
    keep: bool = False
    """``--keep``: databases stay, to be queried after the run (run timestamps and all)."""
    results: dict[str, Any] = field(default_factory=dict)
    _db_counter: Iterator[int] = field(default_factory=itertools.count)

    def url(self, dbname: str) -> str:
        return self.pg.url.rsplit("/", 1)[0] + f"/{dbname}"

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def postmaster_pid(self) -> int | None:
        from bench.procstat import postmaster_pid

        return postmaster_pid(self.pg.data_dir)

    def create_database(self, prefix: str, migrate: bool = True) -> str:
        """A new database named after the benchmark; migrated unless asked otherwise."""
        name = f"{prefix}_{next(self._db_counter)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = self.url(name)
        if migrate:
            db.migrate(url)
        return url

    def drop_database(self, url: str) -> None:
        """Drop a benchmark's database, unless the run keeps its data."""
        name = url.rsplit("/", 1)[1]
        if self.keep:
            progress(f"kept database {name}")
            return
        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        except psycopg.Error as exc:
            progress(f"could not drop database {name}: {exc}")

    @contextmanager
    def cluster(
        self,
        name: str,
        *,
        workers: int = 2,
        controllers: int = 3,
        worker_concurrency: int = 256,
        extra_env: dict[str, str] | None = None,
        controller_log_level: str | None = None,
        ready_timeout: float = 60.0,
    ) -> Iterator[tuple[LocalCluster, str]]:
        """A migrated database and a started cluster on it; yields (cluster, database url).

        ``controller_log_level`` overrides the log level of the controllers only (the scale
        benchmark needs their INFO "schedule heap loaded" line, not every worker's INFO).
        """
        if workers > MAX_WORKERS:
            raise ValueError(f"at most {MAX_WORKERS} workers per cluster")
        cluster: LocalCluster | None = None
        url = ""
        try:
            for attempt in range(1, START_ATTEMPTS + 1):
                # A fresh database per attempt: a failed start may have claimed an epoch that
                # would fence the next cluster's leader (its Raft terms start again at 1).
                url = self.create_database(f"bench_{name}")
                cluster = self._new_cluster(
                    name, url, controllers, workers, worker_concurrency, extra_env
                )
                if controller_log_level:
                    for node_name in cluster.controller_names:
                        cluster.nodes[node_name].env["CHRONORAFT_LOG_LEVEL"] = controller_log_level
                progress(f"{name}: starting {controllers} controllers and {workers} workers")
                try:
                    cluster.start_all()
                    cluster.wait_ready(ready_timeout)
                    break
                except (ClusterError, HTTPException) as exc:
                    # Ports are free when picked, not reserved: a test run on the same machine
                    # may take one first. Start again on another block.
                    cluster.stop_all()
                    cluster = None
                    self.drop_database(url)
                    if attempt == START_ATTEMPTS:
                        raise
                    progress(f"{name}: cluster did not come up ({exc}); retrying on new ports")
            assert cluster is not None
            yield cluster, url
        finally:
            if cluster is not None:
                cluster.stop_all()
                self.drop_database(url)

    def _new_cluster(
        self,
        name: str,
        url: str,
        controllers: int,
        workers: int,
        worker_concurrency: int,
        extra_env: dict[str, str] | None,
    ) -> LocalCluster:
        base = free_port_block(PORTS_PER_CLUSTER)
        return LocalCluster(
            base_dir=self.base_dir / f"cluster-{name}-{base}",
            database_url=url,
            controllers=controllers,
            workers=workers,
            http_base=base,
            raft_base=base + 5,
            grpc_base=base + 10,
            worker_base=base + 15,
            worker_http_base=base + 27,
            worker_concurrency=worker_concurrency,
            extra_env=dict(extra_env or {}),
            log_level=self.log_level,
        )


@contextmanager
def bench_env(keep: bool = False, log_level: str = "WARNING") -> Iterator[BenchEnv]:
    """A temp dir and a started private PostgreSQL; both gone afterwards unless ``keep``."""
    base = Path(tempfile.mkdtemp(prefix="chronoraft-bench-"))
    pg = PgServer.create(str(base / "pg"))
    try:
        progress(f"starting PostgreSQL in {pg.base_dir}")
        pg.start()
        yield BenchEnv(base_dir=base, pg=pg, log_level=log_level, keep=keep)
    finally:
        if keep:
            pg.stop()
            progress(f"kept {base} (logs) and {pg.base_dir} (PostgreSQL data)")
        else:
            pg.destroy()
            shutil.rmtree(base, ignore_errors=True)


def api(
    cluster: LocalCluster, node: str, method: str, path: str, body: Any = None, timeout: float = 10
) -> Any:
    """One admin REST call; raises on anything but 2xx (a benchmark's setup must not
    silently measure a half-built world)."""
    status, answer = http_json(
        method, cluster.url(node) + path, body, timeout=timeout, token=cluster.admin_token
    )
    if not 200 <= status < 300:
        raise RuntimeError(f"{method} {path} on {node}: {status} {answer}")
    return answer


def leader_pid(cluster: LocalCluster, leader: str) -> int:
    pid = cluster.nodes[leader].pid
    if pid is None:
        raise RuntimeError(f"{leader} has no process")
    return pid


def wait_new_leader(cluster: LocalCluster, old: str, timeout: float = 30.0) -> str:
    """The first controller other than ``old`` that reports itself leading."""

    def other_leads() -> str | None:
        for name in cluster.controller_names:
            if name == old or not cluster.nodes[name].alive():
                continue
            info = cluster.cluster_info(name, timeout=1.0)
            if info and info["node"]["role"] == "leader" and info["node"]["leading_epoch"]:
                return name
        return None

    return str(cluster.wait_for("a new leader", other_leads, timeout, interval=0.02))
