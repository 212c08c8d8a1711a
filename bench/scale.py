"""Scale: 10,000 and 100,000 jobs loaded, the same number due every second.

For each loaded count the jobs are topped up with one COPY (:mod:`bench.jobmix`: a fixed
set every second, the rest hourly or daily), then the leader is SIGKILLed so the next one
rebuilds its heap from PostgreSQL: the time to its "schedule heap loaded" log line (which
carries ``jobs=`` and ``ms=``) and to its first dispatch is the time to be ready after a
failover. Then, in steady state, the leader's RSS and CPU and its
``chronoraft_tick_seconds`` histogram (two /metrics scrapes) give the tick cost; with the
same due rate at every loaded count, equal tick costs show it depends on the due, not
the loaded, count.

The controllers log at INFO in JSON here (the heap line is INFO); note that the leader
then also logs one line per dispatched run.
"""

from __future__ import annotations

import json
import time
from argparse import Namespace
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import jobmix, pgsql, prom
from bench.harness import BenchEnv, leader_pid, progress, wait_new_leader
from bench.procstat import Sampler
from bench.stats import histogram_quantile
from bench.table import Table
from controller.local_cluster import LocalCluster, http_json

NAME = "scale"
HEAP_LINE = "schedule heap loaded"
TICK_METRIC = "chronoraft_tick_seconds"


@dataclass(frozen=True)
class HeapLoaded:
    at: float
    jobs: int
    ms: float


def parse_heap_line(line: str) -> HeapLoaded | None:
    """A JSON log line of the leader's heap load, or None for any other line."""
    try:
        doc = json.loads(line)
    except (json.JSONDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("msg") != HEAP_LINE:
        return None
    at = datetime.strptime(doc["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return HeapLoaded(at=at.timestamp(), jobs=int(doc["jobs"]), ms=float(doc["ms"]))


def wait_heap_loaded(log: Path, offset: int, timeout: float) -> HeapLoaded | None:
    """The first heap line written to ``log`` after byte ``offset``, within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log.open("rb") as f:
            f.seek(offset)
            for raw in f:
                found = parse_heap_line(raw.decode(errors="replace"))
                if found is not None:
                    return found
        time.sleep(0.05)
    return None


@dataclass
class Failover:
    ready_s: float | None
    heap_ms: float | None
    heap_jobs: int | None
    first_slot_s: float | None
    first_dispatch_s: float | None


def fail_over(cluster: LocalCluster, url: str, settle: float) -> Failover:
    """SIGKILL the leader; time until the next one has its heap and has dispatched."""
    leader = cluster.wait_for("a leader", cluster.leader, 60)
    old_epoch = int(cluster.cluster_info(leader)["epoch"])
    offsets = {
        n: cluster.nodes[n].log_path.stat().st_size for n in cluster.controller_names if n != leader
    }
    killed = time.time()
    cluster.kill(leader)
    epoch = pgsql.wait_epoch_above(url, old_epoch, 60)
    new = wait_new_leader(cluster, leader, 600)
    loaded = wait_heap_loaded(cluster.nodes[new].log_path, offsets[new], 600)
    first = pgsql.first_dispatch(url, epoch, time.time() + 60) if epoch else None
    fired = pgsql.first_slot_created(url, killed, time.time() + 60)
    cluster.start(leader)
    cluster.wait_for("the killed node to rejoin", lambda: cluster.cluster_info(leader), 60)
    time.sleep(settle)
    return Failover(
        ready_s=(loaded.at - killed) if loaded else None,
        heap_ms=loaded.ms if loaded else None,
        heap_jobs=loaded.jobs if loaded else None,
        first_slot_s=(fired - killed) if fired is not None else None,
        first_dispatch_s=(first.at - killed) if first is not None else None,
    )


def scrape_ticks(cluster: LocalCluster, node: str) -> prom.Histogram:
    status, body = http_json("GET", cluster.url(node) + "/metrics", token=cluster.admin_token)
    if status != 200 or not isinstance(body, str):
        raise RuntimeError(f"/metrics on {node}: {status}")
    return prom.histogram(body, TICK_METRIC)


def run(env: BenchEnv, opts: Namespace) -> list[Table]:
    counts = sorted(opts.scale_jobs)
    due = opts.scale_due
    if counts[0] < due:
        raise ValueError(f"--scale-jobs must be at least --scale-due ({due})")
    table = Table(
        f"Scale: jobs loaded, {due} of them every second, the rest hourly/daily; "
        "leader SIGKILLed to rebuild its heap",
        [
            "jobs loaded",
            "COPY s",
            "kill -> heap loaded s",
            "heap load ms",
            "kill -> first slot fired s",
            "kill -> first dispatch s",
            "backlog skipped",
            "due slots/s",
            "leader RSS MB",
            "leader CPU %",
            "ticks/s",
            "tick mean ms",
            "tick p99 ms (<=)",
            "tick ms per s",
            "tick us per due slot",
        ],
    )
    with env.cluster(
        NAME,
        workers=2,
        worker_concurrency=opts.worker_concurrency,
        extra_env={"CHRONORAFT_LOG_FORMAT": "json"},
        controller_log_level="INFO",
    ) as (cluster, url):
        loaded = 0
        for target in counts:
            started = time.perf_counter()
            pgsql.copy_jobs(url, jobmix.jobs(loaded, target, due, datetime.now(UTC)))
            copy_s = time.perf_counter() - started
            loaded = target
            progress(f"scale: {target} jobs loaded in {copy_s:.1f}s; failing the leader over")
            failover = fail_over(cluster, url, opts.settle)
            if failover.heap_jobs is not None and failover.heap_jobs < target:
                table.note(f"{target}: the new leader's heap had {failover.heap_jobs} jobs")
            time.sleep(opts.warmup)
            # The slots missed while the heap was rebuilt are fired late, and with more due
            # than the fleet runs a backlog grows: start every window without one, so the
            # loaded counts are compared under the same conditions.
            behind = pgsql.skip_backlog(url, "scale-")
            leader = cluster.wait_for("a leader", cluster.leader, 30)
            sampler = Sampler()
            sampler.process("leader", leader_pid(cluster, leader))
            before = scrape_ticks(cluster, leader)
            t0 = time.time()
            sampler.start()
            time.sleep(opts.scale_duration)
            usage = sampler.stop()["leader"]
            t1 = time.time()
            ticks = scrape_ticks(cluster, leader).minus(before)
            seconds = t1 - t0
            slots = pgsql.slots_between(url, t0, t1)
            table.add(
                target,
                copy_s,
                failover.ready_s,
                failover.heap_ms,
                failover.first_slot_s,
                failover.first_dispatch_s,
                behind,
                slots / seconds,
                usage.rss_mb_max,
                usage.cpu_percent,
                ticks.count / seconds,
                ticks.mean * 1000,
                histogram_quantile(0.99, ticks.buckets) * 1000,
                ticks.sum / seconds * 1000,
                ticks.sum / slots * 1e6 if slots else None,
            )
            progress(f"scale: {target} jobs: tick {ticks.mean * 1000:.2f} ms mean")
    table.note(
        "tick = one batch of due slots turned into runs (chronoraft_tick_seconds: heap pops, "
        "catch-up planning, one INSERT of the runs and one UPDATE of next_fire_at); "
        "dispatching them to workers is not part of it"
    )
    table.note(
        "first slot fired = first scheduled run created after the kill (the new leader's first "
        "tick); first dispatch can come earlier: the new leader's dispatcher sends runs the "
        "old one created but had not sent, without waiting for its heap"
    )
    table.note(
        "backlog skipped = runs still pending when the window opened (catch-up of the "
        "failover gap, or more due than the fleet runs), marked skipped so that every "
        "window starts alike"
    )
    table.note(
        "tick p99 is the upper bound of its histogram bucket (buckets 5, 10, 25, 50, 100 ms...)"
    )
    table.note(
        f"{opts.warmup:g}s after each failover before the {opts.scale_duration:g}s window; "
        f"controllers at INFO in JSON (one log line per dispatched run), 2 workers x "
        f"{opts.worker_concurrency} slots"
    )
    return [table]
