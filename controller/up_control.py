"""Start, stop and restart single nodes of a running ``chronoraft up`` from another terminal.

``chronoraft up`` generates its API tokens and gRPC secret on every start and keeps its nodes'
settings in memory, so only the running ``up`` can start a node again the way it was: after
``kill -9`` of the leader, for a rolling restart, or to bring a worker back. It listens on a
Unix socket in its base directory (``control.sock``, mode 0600: only the user running ``up``,
and root, can connect); ``chronoraft up start c2`` sends one JSON line and prints the one-line
answer.

Only nodes of that ``up`` are known by name, and a node is started with exactly the
environment it had (same node id, ports, data directory, tokens), which is what a restart of
a Raft member needs: it comes back as the same member and catches up.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # at run time only `chronoraft up` needs them, not every CLI command
    import socketserver

    from controller.local_cluster import LocalCluster, Node

log = logging.getLogger(__name__)

DEFAULT_BASE_DIR = ".chronoraft/local"
SOCKET_NAME = "control.sock"
ACTIONS = ("start", "stop", "restart", "status")
START_WAIT_SECONDS = 30.0
"""How long ``start`` waits for the node to be back (NodeControl._serving says what counts)."""
REPLY_TIMEOUT_SECONDS = 90.0
"""The client's wait for an answer: a stop may take the node's 15 s grace, a start 30 s."""


class ControlError(Exception):
    """A control request that cannot be carried out; the message says what to do instead."""


def socket_path(base_dir: str | Path) -> Path:
    return Path(base_dir).resolve() / SOCKET_NAME


def another_up_running(base_dir: str | Path) -> bool:
    """True if a live ``chronoraft up`` answers on this base directory's socket; a socket
    file left by one that was killed is removed."""
    path = socket_path(base_dir)
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return False
    return True


def describe_exit(code: int) -> str:
    """``exit code 1`` or ``killed by SIGKILL``, as Popen's returncode has it."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class NodeControl:
    """Carries out control requests on the cluster of this ``up``.

    ``lock`` is shared with ``up``'s own watch over its nodes: LocalCluster is not
    thread-safe, and a node stopped on request must not be reported as having died.
    """

    def __init__(
        self,
        cluster: LocalCluster,
        lock: threading.Lock,
        start_wait: float = START_WAIT_SECONDS,
    ) -> None:
        self._cluster = cluster
        self._lock = lock
        self._start_wait = start_wait
        self.stopped_on_request: set[str] = set()
        """Nodes down because a request stopped them: not news when ``up`` sees them gone."""
        self._told: set[int] = set()
        """Pids whose end :meth:`exits` has already looked at."""

    def handle(self, action: str, node: str) -> str:
        """Carry out one request and return its answer; ControlError when it cannot be."""
        if action == "status":
            from controller.up_progress import status_table

            with self._lock:
                return status_table(self._cluster)
        if action not in ACTIONS:
            raise ControlError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
        if node not in self._cluster.nodes:
            names = ", ".join(self._cluster.nodes)
            raise ControlError(f"no node {node!r} in this cluster: one of {names}")
        if action == "stop":
            return self._stop(node)
        said = self._stop(node) + "; " if action == "restart" else ""
        return said + self._start(node)

    def _stop(self, name: str) -> str:
        with self._lock:
            node = self._cluster.nodes[name]
            if not node.alive():
                return f"{name} is not running"
            pid = node.pid
            self.stopped_on_request.add(name)
            self._cluster.stop(name)  # SIGCONT + SIGTERM, SIGKILL after its grace
            code = node.proc.returncode if node.proc is not None else None
            how = "" if code is None else f", {describe_exit(code)}"
            return f"stopped {name} (pid {pid}{how})"

    def _start(self, name: str) -> str:
        with self._lock:
            node = self._cluster.nodes[name]
            if node.alive():
                if node.paused():
                    raise ControlError(
                        f"{name} is paused (pid {node.pid}): kill -CONT {node.pid} resumes it"
                    )
                return f"{name} is already running (pid {node.pid})"
            since = time.time()
            self._cluster.start(name)
            self.stopped_on_request.discard(name)
            pid = node.pid
        return f"started {name} (pid {pid}), {self._wait_until_serving(node, since)}"

    def exits(self) -> list[tuple[str, int, int]]:
        """(name, pid, return code) of each node that ended since the last call, other than
        by a stop request: what ``up`` tells its operator."""
        ended = []
        with self._lock:
            for name, node in self._cluster.nodes.items():
                proc = node.proc
                if proc is None or proc.pid in self._told or proc.poll() is None:
                    continue
                self._told.add(proc.pid)
                if name not in self.stopped_on_request:
                    ended.append((name, proc.pid, proc.returncode))
        return ended

    def _wait_until_serving(self, node: Node, since: float) -> str:
        """What :meth:`_serving` says once the node serves; ControlError if it ends first
        or is still not serving at the deadline."""
        deadline = time.monotonic() + self._start_wait
        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise ControlError(
                    f"{node.name} (pid {node.pid}) ended as it started "
                    f"({describe_exit(node.proc.returncode)}): see {node.log_path}"
                )
            serving = self._serving(node, since)
            if serving:
                return serving
            time.sleep(0.2)
        raise ControlError(
            f"{node.name} started (pid {node.pid}) but is not serving after "
            f"{self._start_wait:g}s: see {node.log_path}"
        )

    def _serving(self, node: Node, since: float) -> str:
        """What shows the node is back ("" while it is not). A controller: its API answers
        and it has a Raft leader and every peer connected, so the next node of a rolling
        restart may go. A worker: the leader has a heartbeat from it later than ``since``
        (the entry of the process it replaces stays listed for the lease, so being listed
        is not enough)."""
        cluster = self._cluster
        if node.kind == "controller":
            info = cluster.cluster_info(node.name, timeout=1.0)
            if info is None or info["raft"]["leader"] is None:
                return ""
            running = {
                cluster.raft_address(name)
                for name in cluster.controller_names
                if cluster.nodes[name].alive() and not cluster.nodes[name].paused()
            }
            if not all(p["connected"] for p in info["peers"] if p["raft"] in running):
                return ""
            role = info["node"]["role"]
            return f"answering at {node.url} as {role}, connected to every running peer"
        for name in cluster.controller_names:
            info = cluster.cluster_info(name, timeout=1.0)
            if not info or info["node"]["role"] != "leader":
                continue
            for worker in info["workers"]:
                if (
                    worker["id"] == node.name
                    and not worker["draining"]
                    and datetime.fromisoformat(worker["last_heartbeat"]).timestamp() >= since
                ):
                    return f"registered with the leader {name}"
        return ""


class ControlServer:
    """Serves :class:`NodeControl` on the base directory's socket, one request at a time."""

    def __init__(self, base_dir: str | Path, control: NodeControl) -> None:
        import socketserver

        self.path = socket_path(base_dir)
        self.path.unlink(missing_ok=True)
        handler = _handler_for(control)
        old_umask = os.umask(0o177)  # the socket is created 0600, never briefly wider
        try:
            self._server = socketserver.UnixStreamServer(str(self.path), handler)
        finally:
            os.umask(old_umask)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="up-control", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)


def _handler_for(control: NodeControl) -> type[socketserver.StreamRequestHandler]:
    import socketserver

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                request = json.loads(self.rfile.readline())
                action, node = str(request["action"]), str(request["node"])
            except (ValueError, KeyError, TypeError):
                self._answer(False, "malformed request")
                return
            try:
                self._answer(True, control.handle(action, node))
            except ControlError as exc:
                self._answer(False, str(exc))
            except Exception as exc:  # noqa: BLE001 - the client gets the reason, up runs on
                log.exception("control request %s %s failed", action, node)
                self._answer(False, f"{action} {node} failed: {exc}")

        def _answer(self, ok: bool, message: str) -> None:
            self.wfile.write(json.dumps({"ok": ok, "message": message}).encode() + b"\n")

    return Handler


def request(base_dir: str | Path, action: str, node: str) -> int:
    """The client side (``chronoraft up ACTION [NODE]``): prints the answer; exit code 1 when
    the request failed or no ``up`` runs on this base directory."""
    if action != "status" and not node:
        print(f"error: chronoraft up {action} needs a node name (c1, w1, ...)", file=sys.stderr)
        return 2
    path = socket_path(base_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(REPLY_TIMEOUT_SECONDS)
            conn.connect(str(path))
            conn.sendall(json.dumps({"action": action, "node": node or ""}).encode() + b"\n")
            raw = conn.makefile("rb").readline()
    except (FileNotFoundError, ConnectionRefusedError):
        print(
            f"error: no `chronoraft up` is running with base dir {path.parent} "
            "(start it with ./dev up, or pass its --base-dir)",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"error: cannot reach `chronoraft up` at {path}: {exc}", file=sys.stderr)
        return 1
    try:
        answer = json.loads(raw)
    except ValueError:
        print("error: `chronoraft up` closed the connection without an answer", file=sys.stderr)
        return 1
    if not answer.get("ok"):
        print(f"error: {answer.get('message')}", file=sys.stderr)
        return 1
    print(answer.get("message"))
    return 0
