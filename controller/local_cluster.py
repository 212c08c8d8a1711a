"""A whole chronoraft cluster as local processes: used by ``chronoraft up`` and the tests.

Each node is a real ``chronoraft controller`` / ``chronoraft worker`` process with its own
log file, so tests can SIGKILL, SIGSTOP and restart exactly what an operator would.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.executor import stat_fields


class ClusterError(RuntimeError):
    pass


def _ephemeral_low(default: int = 32768) -> int:
    """The first port the kernel hands out to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_port_block(n: int, low: int = 20000, high: int | None = None) -> int:
    """A base port such that base..base+n-1 are all free on 127.0.0.1 right now.

    Tests, the demo and the chaos run start whole clusters side by side; a random block
    keeps them from colliding with each other and with `chronoraft up`'s defaults. The
    block ends below the kernel's ephemeral range: a client polling a port inside it
    before its server listens can be given that very port as its own and connect to
    itself (TCP simultaneous open), reading back its own request ("BadStatusLine: GET
    /api/v1/cluster" in a cluster test).
    """
    high = min(60000, _ephemeral_low()) if high is None else high
    for _ in range(200):
        base = random.randrange(low, high - n)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise ClusterError("no block of free ports on 127.0.0.1")


def http_json(
    method: str, url: str, body: Any = None, timeout: float = 5.0, token: str | None = None
) -> tuple[int, Any]:
    """A tiny JSON HTTP client (stdlib only); returns (status, decoded body or text).

    ``token`` is sent as ``Authorization: Bearer``; None means ``CHRONORAFT_TOKEN`` from the
    environment, as for the CLI client commands ("" sends no token).
    """
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    bearer = os.environ.get("CHRONORAFT_TOKEN", "") if token is None else token
    if bearer:
        req.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        return status, json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return status, raw.decode(errors="replace")


@dataclass
class Node:
    name: str
    kind: str  # "controller" | "worker"
    env: dict[str, str]
    log_path: Path
    http_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def paused(self) -> bool:
        """True while the process is stopped by a signal (``kill -STOP``): state T in /proc."""
        if not self.alive() or self.proc is None:
            return False
        fields = stat_fields(self.proc.pid)
        return fields is not None and fields[0] == b"T"


@dataclass
class LocalCluster:
    base_dir: Path
    database_url: str
    controllers: int = 3
    workers: int = 2
    http_base: int = 8080
    raft_base: int = 7000
    grpc_base: int = 9090
    worker_base: int = 50051
    worker_http_base: int = 9100
    worker_concurrency: int = 4
    raft_password: str = "chronoraft-dev-password"
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    """API token named ``admin`` with role admin (generated per cluster unless given)."""
    read_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    """API token named ``reader`` with role read."""
    grpc_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    """Shared secret of every controller<->worker gRPC call."""
    extra_env: dict[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    raft_proxy_ports: tuple[int, ...] = ()
    """One port per controller: controller i then advertises 127.0.0.1:raft_proxy_ports[i]
    (its ``CHRONORAFT_RAFT_SELF`` and its entry in the peers' lists) while it still listens
    on raft_base + i (``CHRONORAFT_RAFT_BIND``). Whoever listens on the proxy ports (a test's
    TCP proxy) then carries all Raft traffic and can cut it. Empty: no proxies."""
    nodes: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir)
        if self.raft_proxy_ports and len(self.raft_proxy_ports) != self.controllers:
            raise ClusterError(
                f"raft_proxy_ports needs one port per controller ({self.controllers}), "
                f"got {len(self.raft_proxy_ports)}"
            )
        (self.base_dir / "logs").mkdir(parents=True, exist_ok=True)
        for i in range(self.controllers):
            self._add_controller(i)
        for j in range(self.workers):
            self._add_worker(j)

    # ----- topology -----

    def _common_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONORAFT_")}
        env.update(
            CHRONORAFT_DATABASE_URL=self.database_url,
            CHRONORAFT_DATA_DIR=str(self.base_dir / "data"),
            CHRONORAFT_LOG_LEVEL=self.log_level,
            CHRONORAFT_GRPC_SECRET=self.grpc_secret,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def _add_controller(self, i: int) -> None:
        raft = [self.raft_address(f"c{k + 1}") for k in range(self.controllers)]
        env = self._common_env()
        env.update(
            CHRONORAFT_NODE_ID=f"c{i + 1}",
            CHRONORAFT_HTTP_PORT=str(self.http_base + i),
            CHRONORAFT_GRPC_PORT=str(self.grpc_base + i),
            CHRONORAFT_RAFT_SELF=raft[i],
            CHRONORAFT_RAFT_PEERS=",".join(a for k, a in enumerate(raft) if k != i),
            CHRONORAFT_RAFT_PASSWORD=self.raft_password,
        )
        env.setdefault(  # extra_env may bring its own tokens
            "CHRONORAFT_API_TOKENS", f"admin:admin:{self.admin_token},reader:read:{self.read_token}"
        )
        if self.raft_proxy_ports:
            env["CHRONORAFT_RAFT_BIND"] = f"127.0.0.1:{self.raft_bind_port(f'c{i + 1}')}"
        name = f"c{i + 1}"
        self.nodes[name] = Node(name, "controller", env, self._log(name), self.http_base + i)

    def _add_worker(self, j: int) -> None:
        env = self._common_env()
        env.update(
            CHRONORAFT_WORKER_ID=f"w{j + 1}",
            CHRONORAFT_WORKER_PORT=str(self.worker_base + j),
            CHRONORAFT_WORKER_HTTP_PORT=str(self.worker_http_base + j),
            CHRONORAFT_WORKER_CONCURRENCY=str(self.worker_concurrency),
            CHRONORAFT_CONTROLLERS=",".join(
                f"127.0.0.1:{self.grpc_base + k}" for k in range(self.controllers)
            ),
        )
        name = f"w{j + 1}"
        self.nodes[name] = Node(name, "worker", env, self._log(name), self.worker_http_base + j)

    def add_worker(self) -> str:
        """Scale out by one worker (started by :meth:`start`)."""
        self._add_worker(sum(1 for n in self.nodes.values() if n.kind == "worker"))
        return [n for n in self.nodes if n.startswith("w")][-1]

    def _log(self, name: str) -> Path:
        return self.base_dir / "logs" / f"{name}.log"

    @property
    def controller_names(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.kind == "controller"]

    @property
    def worker_names(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.kind == "worker"]

    def url(self, name: str = "c1") -> str:
        return self.nodes[name].url

    def raft_bind_port(self, name: str) -> int:
        """The port controller ``name`` (c1, c2, ...) listens on for Raft."""
        return self.raft_base + int(name[1:]) - 1

    def raft_address(self, name: str) -> str:
        """The Raft address controller ``name`` is known by (a proxy's, when configured)."""
        i = int(name[1:]) - 1
        port = self.raft_proxy_ports[i] if self.raft_proxy_ports else self.raft_base + i
        return f"127.0.0.1:{port}"

    # ----- processes -----

    def start(self, name: str) -> None:
        node = self.nodes[name]
        if node.alive():
            return
        log = open(node.log_path, "ab")  # noqa: SIM115 - owned by the child process
        node.proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", node.kind],
            env=node.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def start_all(self) -> None:
        for name in self.nodes:
            self.start(name)

    def signal(self, name: str, sig: signal.Signals) -> None:
        node = self.nodes[name]
        if node.proc is not None and node.proc.poll() is None:
            os.kill(node.proc.pid, sig)

    def kill(self, name: str) -> None:
        """SIGKILL the node's process group and reap it (a worker's tasks run in their own
        sessions and outlive it; the worker ends such orphans when it starts again)."""
        node = self.nodes[name]
        if node.proc is None:
            return
        if node.proc.poll() is None:
            try:
                os.killpg(node.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.proc.wait(timeout=10)

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """SIGTERM (resuming a stopped process first), then SIGKILL after ``timeout``."""
        node = self.nodes[name]
        if node.proc is None or node.proc.poll() is not None:
            return
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.kill(node.proc.pid, sig)
            except ProcessLookupError:
                return
        try:
            node.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(name)

    def stop_all(self) -> None:
        for name in list(self.nodes)[::-1]:
            self.stop(name, timeout=10.0)

    # ----- observation -----

    def cluster_info(self, name: str, timeout: float = 2.0) -> dict[str, Any] | None:
        try:
            status, body = http_json(
                "GET", self.url(name) + "/api/v1/cluster", timeout=timeout, token=self.read_token
            )
        except OSError:
            return None
        return body if status == 200 and isinstance(body, dict) else None

    def leader(self) -> str | None:
        """Name of the controller whose own report says it leads, if exactly one does.

        Leading counts once its epoch is claimed in PostgreSQL: Raft makes a node leader a
        moment before its claim lands, and callers read the epoch next.
        """
        leaders = []
        for name in self.controller_names:
            if not self.nodes[name].alive():
                continue
            info = self.cluster_info(name, timeout=1.0)
            if (
                info
                and info["node"]["role"] == "leader"
                and info["node"]["leading_epoch"]
                and info["epoch"] == info["node"]["leading_epoch"]
            ):
                leaders.append(name)
        return leaders[0] if len(leaders) == 1 else None

    def wait_for(self, what: str, check: Any, timeout: float, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except OSError:
                last = None
            if last:
                return last
            time.sleep(interval)
        raise ClusterError(f"timed out after {timeout:g}s waiting for {what}")

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Every node up, one leader, every live worker registered; returns the leader."""
        for name, node in self.nodes.items():
            if node.proc is not None and node.proc.poll() is not None:
                raise ClusterError(f"{name} exited with {node.proc.returncode}: {self.tail(name)}")
        leader = self.wait_for("a leader", self.leader, timeout)

        def controllers_answer() -> bool:
            """A restarted node may still be starting while the others already elected."""
            live = [n for n in self.controller_names if self.nodes[n].alive()]
            return all(self.cluster_info(n, timeout=1.0) for n in live)

        self.wait_for("every live controller to answer", controllers_answer, timeout)
        wanted = {n for n in self.worker_names if self.nodes[n].alive()}

        def workers_registered() -> bool:
            info = self.cluster_info(leader)
            return bool(info) and wanted <= {w["id"] for w in info["workers"]}

        self.wait_for("workers to register", workers_registered, timeout)
        return leader

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            text = self.nodes[name].log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
