"""TCP proxies that tests put between controllers to cut Raft links (network partitions).

One :class:`TcpProxy` stands in front of each controller's Raft port: the controller
advertises the proxy's address (``CHRONORAFT_RAFT_SELF``) and listens behind it
(``CHRONORAFT_RAFT_BIND``). A :class:`ProxyNetwork` holds one proxy per controller and
isolates a node by cutting every connection to it *and* every connection from it.

The second half needs to know who opened a connection. PySyncObj keeps one TCP connection
per pair of nodes, opened by the node whose address sorts higher, to the other node's
advertised address; so the proxy of node Y also carries Y's link to every peer that dials
it, X among them. The proxy cannot read who is calling (the handshake is encrypted), so it
asks the kernel: the client end of an accepted loopback connection appears in
``/proc/net/tcp`` with its inode, and that inode is an open fd of exactly one controller
process (Linux only, which is what the cluster tests run on). A connection whose owner cannot
be found is treated as coming from an isolated node while any node is isolated (fail
closed), so a failed lookup can never leave a hole in a partition.

Everything listens on 127.0.0.1 only, runs on daemon threads inside the test process, keeps
at most ``max_links`` connections per proxy, and stops with :meth:`close`.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping

LOOPBACK = "127.0.0.1"
ACCEPT_POLL_S = 0.2
CONNECT_TIMEOUT_S = 2.0
JOIN_TIMEOUT_S = 2.0

Identify = Callable[[int, int], str | None]


def _reset(sock: socket.socket) -> None:
    """Close with an RST, so the peer sees the connection die at once rather than linger."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _no_delay(sock: socket.socket) -> None:
    """Forward each small Raft message at once, as PySyncObj's own sockets do: with Nagle
    on, a message waits for the ACK of the previous one, which the receiver may delay by
    up to 200 ms, enough to stall votes and trigger needless elections."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _client_socket_inode(client_port: int, server_port: int) -> int | None:
    """Inode of the loopback socket 127.0.0.1:client_port -> 127.0.0.1:server_port."""
    try:
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                cols = line.split()
                local, remote, inode = cols[1], cols[2], int(cols[9])
                if (
                    inode
                    and int(local.rsplit(":", 1)[1], 16) == client_port
                    and int(remote.rsplit(":", 1)[1], 16) == server_port
                ):
                    return inode
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return None


def connection_owner(
    client_port: int, server_port: int, pids: Mapping[str, int | None]
) -> str | None:
    """Which process (by name in ``pids``) holds the client end of a loopback connection."""
    inode = _client_socket_inode(client_port, server_port)
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for name, pid in pids.items():
        if pid is None:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                    return name
            except OSError:
                continue
    return None


class _Link:
    """One proxied connection: two pumps, torn down together."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, source: str | None) -> None:
        self.proxy = proxy
        self.client = client
        self.source = source
        self.upstream: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.thread = threading.Thread(
            target=self._run, name=f"proxy-{proxy.name}-link", daemon=True
        )

    def _run(self) -> None:
        try:
            upstream = socket.create_connection(
                (LOOPBACK, self.proxy.target_port), timeout=CONNECT_TIMEOUT_S
            )
        except OSError:
            self.close()
            self._release()
            return
        upstream.settimeout(None)
        _no_delay(upstream)
        with self._lock:
            self.upstream = upstream
            closed = self._closed
        if not closed:
            back = threading.Thread(
                target=self._pump,
                args=(upstream, self.client),
                name=f"proxy-{self.proxy.name}-pump",
                daemon=True,
            )
            back.start()
            self._pump(self.client, upstream)
            back.join(JOIN_TIMEOUT_S)
        self.close()
        self._release()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        """Cut both directions now; the sockets are released by the link's own thread, so
        no other thread's blocked ``recv`` can ever see its fd number reused."""
        with self._lock:
            self._closed = True
            socks = [s for s in (self.client, self.upstream) if s is not None]
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _release(self) -> None:
        _reset(self.client)
        if self.upstream is not None:
            self.upstream.close()
        self.proxy._forget(self)


class TcpProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:target_port until told to cut.

    The listener is bound at construction (on a free port unless ``port`` is given), so its
    address can be handed to a process before the process behind it exists; forwarding
    starts with :meth:`start`. While blocked, new connections are accepted and reset at once
    (the caller sees its connection die, as after a peer crash) and nothing is forwarded.
    """

    def __init__(
        self,
        name: str,
        port: int = 0,
        identify: Identify | None = None,
        max_links: int = 32,
    ) -> None:
        self.name = name
        self._identify = identify
        self._max_links = max_links
        self._listener = socket.create_server((LOOPBACK, port))
        self._listener.settimeout(ACCEPT_POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self.target_port = 0
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._blocked = False
        self._blocked_sources: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.forwarded = 0
        self.refused = 0
        self.unidentified = 0

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, target_port: int) -> None:
        self.target_port = target_port
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"proxy-{self.name}", daemon=True
        )
        self._thread.start()

    # ----- control -----

    def block(self) -> None:
        """Cut every connection and refuse new ones."""
        with self._lock:
            self._blocked = True
            doomed = list(self._links)
        for link in doomed:
            link.close()

    def block_source(self, source: str) -> None:
        """Cut connections opened by ``source`` (and, failing closed, by anyone unknown)."""
        with self._lock:
            self._blocked_sources.add(source)
            doomed = [k for k in self._links if k.source is None or k.source == source]
        for link in doomed:
            link.close()

    def heal(self) -> None:
        with self._lock:
            self._blocked = False
            self._blocked_sources.clear()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
        self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        for link in links:
            link.thread.join(JOIN_TIMEOUT_S)

    # ----- forwarding -----

    def _refuses(self, source: str | None) -> bool:
        if self._blocked or len(self._links) >= self._max_links:
            return True
        if not self._blocked_sources:
            return False
        return source is None or source in self._blocked_sources

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, (_, client_port) = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            source = self._identify(client_port, self.port) if self._identify else None
            with self._lock:
                if source is None and self._identify is not None:
                    self.unidentified += 1
                refused = self._stop.is_set() or self._refuses(source)
                if refused:
                    self.refused += 1
                else:
                    self.forwarded += 1
                    link = _Link(self, client, source)
                    self._links.add(link)
            if refused:
                _reset(client)
            else:
                client.settimeout(None)
                _no_delay(client)
                link.thread.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)


class ProxyNetwork:
    """One proxy in front of each node; :meth:`isolate` cuts a node off in both directions.

    Create it first (its ports go into the cluster's configuration), then :meth:`start` it
    with each node's real listening port and a way to find the nodes' current pids.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._pids: Callable[[], Mapping[str, int | None]] = dict
        self.proxies = {name: TcpProxy(name, identify=self._owner) for name in names}
        self.isolated: set[str] = set()

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(p.port for p in self.proxies.values())

    def _owner(self, client_port: int, server_port: int) -> str | None:
        return connection_owner(client_port, server_port, self._pids())

    def start(
        self, targets: Mapping[str, int], pids: Callable[[], Mapping[str, int | None]]
    ) -> None:
        self._pids = pids
        for name, proxy in self.proxies.items():
            proxy.start(targets[name])

    def isolate(self, name: str) -> None:
        """Nothing reaches ``name`` (its own proxy refuses all) and nothing it opens reaches
        anyone (every other proxy refuses connections owned by its process)."""
        self.isolated.add(name)
        self.proxies[name].block()
        for other, proxy in self.proxies.items():
            if other != name:
                proxy.block_source(name)

    def heal(self) -> None:
        self.isolated.clear()
        for proxy in self.proxies.values():
            proxy.heal()

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            name: {"forwarded": p.forwarded, "refused": p.refused, "unidentified": p.unidentified}
            for name, p in self.proxies.items()
        }

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()
