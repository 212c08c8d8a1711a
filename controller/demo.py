"""``chronoraft demo failover``: SIGKILL the leader of a running cluster and show what follows.

Without ``--url`` the demo starts everything it needs (a private PostgreSQL and a
:class:`LocalCluster` on free ports) and removes it afterwards. With ``--url`` it uses the
controllers of a cluster started by ``chronoraft up`` on this machine and finds the leader's
pid through each controller's ``GET /api/v1/cluster``, which reports that node's own id, role
and pid. Either way it only observes through the public REST API, as an operator would: the
timeline comes from polling ``/api/v1/cluster`` and ``/api/v1/runs``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from controller.local_cluster import ClusterError, LocalCluster, free_port_block, http_json

DEFAULT_URLS = ["http://127.0.0.1:8080", "http://127.0.0.1:8081", "http://127.0.0.1:8082"]
WARMUP_RUNS = 3
"""Successful runs before the kill, so the table shows the old leader at work."""
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled", "skipped"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class DemoError(RuntimeError):
    """The demo cannot go on (no leader, no reachable controller, a timeout)."""


def say(line: str = "") -> None:
    print(line, flush=True)


def _wait(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(interval)
    raise DemoError(f"timed out after {timeout:g}s waiting for {what}")


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _clock(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%H:%M:%S")


@dataclass
class LeaderView:
    url: str
    node_id: str
    pid: int
    epoch: int


class Observer:
    """Talks to the controllers over REST, skipping the ones that stopped answering."""

    def __init__(self, urls: list[str], token: str | None = None) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.token = token
        """API token (admin: the demo creates a job); None: CHRONORAFT_TOKEN."""
        self.dead: set[str] = set()

    def alive_urls(self) -> list[str]:
        return [u for u in self.urls if u not in self.dead]

    def cluster(self, url: str) -> dict[str, Any] | None:
        try:
            status, body = http_json("GET", url + "/api/v1/cluster", timeout=1.0, token=self.token)
        except OSError:
            return None
        return body if status == 200 and isinstance(body, dict) else None

    def leader(self) -> LeaderView | None:
        """The one controller whose own report says it leads (with a running leader loop)."""
        found = []
        for url in self.alive_urls():
            info = self.cluster(url)
            node = info["node"] if info else None
            if node and node["role"] == "leader" and node["leading_epoch"]:
                found.append(LeaderView(url, node["id"], int(node["pid"]), node["leading_epoch"]))
        return found[0] if len(found) == 1 else None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """The first answer any live controller gives (writes work on followers too)."""
        last: Any = None
        for url in self.alive_urls():
            try:
                status, reply = http_json(method, url + path, body, timeout=5.0, token=self.token)
            except OSError as exc:
                last = exc
                continue
            if status < 300:
                return reply
            if status < 500:
                raise DemoError(f"{method} {path}: {status} {reply}")
            last = reply
        raise DemoError(f"{method} {path}: no controller answered ({last})")

    def runs(self, job_id: int) -> list[dict[str, Any]]:
        reply = self.api("GET", f"/api/v1/runs?job_id={job_id}&limit=1000")
        return sorted(reply["items"], key=lambda r: r["scheduled_for"])

    def history(self) -> list[dict[str, Any]]:
        """The leadership claims PostgreSQL recorded: epoch, node_id, claimed_at."""
        for url in self.alive_urls():
            info = self.cluster(url)
            if info:
                return list(info["leadership_history"])
        return []

    def epoch_owners(self) -> dict[int, str]:
        return {h["epoch"]: h["node_id"] for h in self.history()}


def failover(observer: Observer, kill: Callable[[LeaderView], None], observe: float) -> bool:
    """The scenario; returns True when every slot around the kill ran exactly once."""
    _wait("a leader", observer.leader, timeout=60)
    job = observer.api(
        "POST",
        "/api/v1/jobs",
        {
            "name": f"demo-failover-{uuid.uuid4().hex[:6]}",
            "description": "chronoraft demo failover: fires every second",
            "schedule": "* * * * * *",
            "command": 'echo "slot $CHRONORAFT_SCHEDULED_FOR run $CHRONORAFT_RUN_ID"',
        },
    )
    say(f"created job {job['name']} (id {job['id']}), schedule '* * * * * *' (every second)")
    try:
        return _failover(observer, kill, observe, job)
    finally:
        with contextlib.suppress(DemoError, OSError):
            observer.api("DELETE", f"/api/v1/jobs/{job['id']}")


def _failover(
    observer: Observer,
    kill: Callable[[LeaderView], None],
    observe: float,
    job: dict[str, Any],
) -> bool:
    job_id = int(job["id"])
    _wait(
        f"{WARMUP_RUNS} successful runs",
        lambda: sum(r["state"] == "succeeded" for r in observer.runs(job_id)) >= WARMUP_RUNS,
        timeout=60,
        interval=0.2,
    )
    old = _wait("a leader", observer.leader, timeout=30)
    say(f"leader: {old.node_id} (pid {old.pid}, epoch {old.epoch}) at {old.url}")

    def dispatched_by_old() -> list[dict[str, Any]]:
        return [r for r in observer.runs(job_id) if r["epoch"] == old.epoch and r["dispatched_at"]]

    _wait(f"a dispatch by {old.node_id}", dispatched_by_old, timeout=30, interval=0.1)

    kill(old)
    killed_wall, killed_mono = time.time(), time.monotonic()
    observer.dead.add(old.url)

    def successor() -> LeaderView | None:
        view = observer.leader()
        return view if view and view.epoch > old.epoch else None

    new = _wait("a new leader", successor, timeout=30, interval=0.02)
    seen_after = time.monotonic() - killed_mono
    # When the successor claimed the epoch in PostgreSQL; polling only bounds it from above.
    claims = [h for h in observer.history() if h["epoch"] == new.epoch and h["claimed_at"]]
    claimed = _parse_time(claims[0]["claimed_at"]) if claims else None
    elected_after = claimed.timestamp() - killed_wall if claimed else seen_after

    def first_dispatch() -> dict[str, Any] | None:
        mine = [r for r in observer.runs(job_id) if r["epoch"] == new.epoch and r["dispatched_at"]]
        return min(mine, key=lambda r: _parse_time(r["dispatched_at"])) if mine else None

    first = _wait("a dispatch by the new leader", first_dispatch, timeout=30, interval=0.05)
    first_at = _parse_time(first["dispatched_at"])
    assert first_at is not None
    time.sleep(max(0.0, killed_mono + observe - time.monotonic()))
    kept = [r for r in observer.runs(job_id) if r["epoch"] == new.epoch]
    before = dispatched_by_old()

    say()
    say("timeline (t = 0 at the SIGKILL)")
    if before:
        last = max(before, key=lambda r: _parse_time(r["dispatched_at"]))
        last_at = _parse_time(last["dispatched_at"])
        assert last_at is not None
        say(
            f"  t{last_at.timestamp() - killed_wall:+.3f}s  last dispatch by {old.node_id} "
            f"(epoch {old.epoch}): slot {_clock(_parse_time(last['scheduled_for']))}"
        )
    say(f"  t+0.000s  SIGKILL {old.node_id} (pid {old.pid}), the leader of epoch {old.epoch}")
    say(
        f"  t+{elected_after:.3f}s  new leader: {new.node_id} claims epoch {new.epoch} "
        f"(seen via /api/v1/cluster at t+{seen_after:.3f}s)"
    )
    late = " (late)" if first["late"] else ""
    say(
        f"  t+{first_at.timestamp() - killed_wall:.3f}s  next dispatch by {new.node_id} "
        f"(epoch {new.epoch}): slot {_clock(_parse_time(first['scheduled_for']))}{late}"
    )
    say(
        f"  t+{observe:.3f}s  still firing: {len(kept)} runs dispatched by {new.node_id} "
        "since the kill"
    )

    observer.api("POST", f"/api/v1/jobs/{job_id}/pause")
    runs = _wait(
        "the runs to finish",
        lambda: (lambda rs: rs if rs and all(r["state"] in TERMINAL for r in rs) else None)(
            observer.runs(job_id)
        ),
        timeout=30,
        interval=0.2,
    )
    return _report(runs, killed_wall, observer.epoch_owners())


def _report(runs: list[dict[str, Any]], killed_wall: float, owners: dict[int, str]) -> bool:
    say()
    say("runs around the kill")
    say(f"  {'SLOT (UTC)':<11} {'STATE':<10} {'LATE':<5} {'EPOCH':>5}  DISPATCHED BY")
    shown = [r for r in runs if _parse_time(r["scheduled_for"]).timestamp() >= killed_wall - 4]
    marked = False
    for run in shown:
        slot = _parse_time(run["scheduled_for"])
        if not marked and slot.timestamp() > killed_wall:
            say(f"  {'-- SIGKILL':<11} {'':<10} {'':<5} {'':>5}  {'-' * 13}")
            marked = True
        epoch = run["epoch"]
        owner = owners.get(epoch, "?") if epoch is not None else "-"
        say(
            f"  {_clock(slot):<11} {run['state']:<10} {'yes' if run['late'] else 'no':<5} "
            f"{epoch if epoch is not None else '-':>5}  {owner}"
        )
    seconds = [int(_parse_time(r["scheduled_for"]).timestamp()) for r in runs]
    doubled = sorted(s for s, n in Counter(seconds).items() if n > 1)
    missing = sorted(set(range(min(seconds), max(seconds) + 1)) - set(seconds))
    failed = [r for r in runs if r["state"] != "succeeded"]
    say()
    say(
        f"verdict: {len(runs)} slots {_clock(datetime.fromtimestamp(min(seconds), UTC))}"
        f"-{_clock(datetime.fromtimestamp(max(seconds), UTC))}: {len(missing)} missed, "
        f"{len(doubled)} doubled, {sum(r['late'] for r in runs)} late, "
        f"{len(failed)} not succeeded"
    )
    return not missing and not doubled and not failed


# ----- where the cluster comes from -----


@contextlib.contextmanager
def own_cluster(keep: bool) -> Iterator[tuple[Observer, Callable[[LeaderView], None]]]:
    """A private PostgreSQL and 3 controllers + 2 workers, removed on exit unless ``keep``."""
    from common import db
    from common.pgserver import PgServer, PgServerError

    base = Path(tempfile.mkdtemp(prefix="chronoraft-demo-"))
    os.chmod(base, 0o755)  # the private PostgreSQL may run as the postgres user
    say("starting a private PostgreSQL ...")
    pg = PgServer.create(str(base / "postgres"))
    cluster: LocalCluster | None = None
    try:
        try:
            pg.start()
        except PgServerError as exc:
            raise DemoError(f"cannot start PostgreSQL: {exc}") from exc
        db.migrate(pg.url)
        ports = free_port_block(20)
        cluster = LocalCluster(
            base_dir=base,
            database_url=pg.url,
            http_base=ports,
            raft_base=ports + 5,
            grpc_base=ports + 10,
            worker_base=ports + 15,
            worker_http_base=ports + 17,
        )
        say(f"starting 3 controllers and 2 workers (REST on 127.0.0.1:{ports}-{ports + 2}) ...")
        cluster.start_all()
        try:
            cluster.wait_ready(timeout=90)
        except ClusterError as exc:
            for name in cluster.nodes:
                print(f"--- {name} ---\n{cluster.tail(name)}", file=sys.stderr)
            raise DemoError(f"the cluster did not become ready: {exc}") from exc
        by_url = {cluster.url(n): n for n in cluster.controller_names}

        def kill(leader: LeaderView) -> None:
            cluster.kill(by_url[leader.url])  # the whole process group, then reaped

        yield Observer(list(by_url), cluster.admin_token), kill
    finally:
        if keep and cluster is not None:
            _keep(cluster, pg)
        else:
            say("stopping the demo cluster ...")
            if cluster is not None:
                cluster.stop_all()
            pg.destroy()
            shutil.rmtree(base, ignore_errors=True)
            say("stopped and removed")


def _keep(cluster: LocalCluster, pg: Any) -> None:
    """Bring the killed controller back and leave everything running."""
    for name in cluster.controller_names:
        if not cluster.nodes[name].alive():
            cluster.start(name)
            say(f"restarted {name} (pid {cluster.nodes[name].pid}); it rejoins as a follower")
    say(f"left running (--keep); PostgreSQL at {pg.url}, logs in {cluster.base_dir}/logs")
    say(f"  admin token: {cluster.admin_token}  read token: {cluster.read_token}")
    for name, node in cluster.nodes.items():
        say(f"  {node.kind:<10} {name}: {node.url}  (pid {node.pid})")
    pids = " ".join(str(n.pid) for n in cluster.nodes.values() if n.pid)
    as_owner = "runuser -u postgres -- " if os.geteuid() == 0 else ""
    say(f"  stop with: kill {pids}; {as_owner}pg_ctl -D {pg.data_dir} stop")


def _is_controller_process(pid: int) -> bool:
    """Refuse to SIGKILL something that is not a chronoraft controller (e.g. a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc here: trust the API's answer
    return b"controller" in argv and any(b"chronoraft" in a or b"controller" in a for a in argv)


def existing_cluster(
    urls: list[str], token: str | None
) -> tuple[Observer, Callable[[LeaderView], None]]:
    hosts = {urlsplit(u).hostname for u in urls}
    if not hosts <= LOOPBACK:
        raise DemoError(
            f"--url must point at controllers on this machine (the demo sends SIGKILL): {hosts}"
        )
    observer = Observer(urls, token)
    reachable = [u for u in observer.urls if observer.cluster(u)]
    if len(reachable) < 2:
        raise DemoError(
            f"need at least two reachable controllers, got {reachable or 'none'} from {urls}; "
            "give every controller's URL, e.g. the three `chronoraft up` printed, and its "
            "admin token (--token or CHRONORAFT_TOKEN)"
        )
    observer.urls = reachable

    def kill(leader: LeaderView) -> None:
        if not _is_controller_process(leader.pid):
            raise DemoError(f"pid {leader.pid} is not a chronoraft controller on this machine")
        os.kill(leader.pid, signal.SIGKILL)

    return observer, kill


def _urls(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    urls = [u.strip() for v in values for u in (v or "").split(",") if u.strip()]
    if urls:
        return urls
    env = os.environ.get("CHRONORAFT_URL", "")
    return [u.strip() for u in env.split(",") if u.strip()] or DEFAULT_URLS


def run_demo(args: argparse.Namespace) -> int:
    urls = _urls(args.url)
    say("chronoraft demo failover: SIGKILL the leader while a job fires every second")
    try:
        if urls is None:
            with own_cluster(args.keep) as (observer, kill):
                ok = failover(observer, kill, args.observe)
        else:
            observer, kill = existing_cluster(urls, args.token)
            ok = failover(observer, kill, args.observe)
            say(
                "note: the killed controller stays down; for a `./dev up` cluster, "
                "`./dev up start <node>` (the node the timeline names) brings it back"
            )
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    say("result: no slot missed or doubled" if ok else "result: slots missed or doubled!")
    return 0 if ok else 1
