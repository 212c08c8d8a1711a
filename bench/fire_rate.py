"""Fire rate and lateness: N jobs every second (``* * * * * *``, command ``true``).

For each N: load the jobs (one COPY, then a scheduler reload), let them run for a warm-up,
then measure a window of whole seconds. Afterwards the runs table says, per slot, whether a
process started and when (``runs.started_at`` is the worker's clock right after the spawn
returned), so lateness = started_at - scheduled_for covers the whole path from slot to
process. The same N then runs on APScheduler (see :mod:`bench.vs_apscheduler`) while the
chronoraft jobs are paused, and a ratio row compares the two.
"""

from __future__ import annotations

import math
import time
from argparse import Namespace

from bench import pgsql, vs_apscheduler
from bench.fires import STAGES, FireStats, analyze, lateness_stages, sustained_target_note
from bench.harness import BenchEnv, api, leader_pid, progress
from bench.procstat import Sampler, Usage
from bench.stats import Summary, burst_start_floor_ms, ratio, summarize
from bench.table import Cell, Table
from controller.leader.loop import DISPATCH_BATCH
from controller.local_cluster import LocalCluster

NAME = "fire_rate"
COLUMNS = [
    "scheduler",
    "N",
    "expected/s",
    "fired/s",
    "fired %",
    "missed",
    "late p50 ms",
    "late p99 ms",
    "late max ms",
    "sched CPU %",
    "sched RSS MB",
    "spawn CPU %",
    "PG CPU %",
]


def _row(label: str, n: int, stats: FireStats, usage: dict[str, Usage], spawn: str) -> list[Cell]:
    sched = usage.get("scheduler")
    pg = usage.get("postgres")
    spawner = usage.get(spawn)
    return [
        label,
        n,
        stats.expected_per_s,
        stats.fired_per_s,
        stats.fired_percent,
        stats.missed,
        stats.late_ms.median,
        stats.late_ms.p99,
        stats.late_ms.max,
        sched.cpu_percent if sched else None,
        sched.rss_mb_max if sched else None,
        spawner.cpu_percent if spawner else None,
        pg.cpu_percent if pg else None,
    ]


def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.2))


def measure_chronoraft(
    env: BenchEnv, cluster: LocalCluster, url: str, n: int, opts: Namespace
) -> tuple[FireStats, list[Summary], dict[str, Usage], list[str]]:
    """One size on the running cluster; the jobs are paused again afterwards. Returns the
    fires' statistics, the lateness per stage of ``STAGES``, CPU use and notes."""
    notes: list[str] = []
    prefix = f"fire{n}-"
    leader = cluster.wait_for("a leader", cluster.leader, 30)
    epoch_before = (cluster.cluster_info(leader) or {}).get("epoch")
    started = time.perf_counter()
    pgsql.copy_jobs(url, pgsql.every_second(prefix, n), catchup_window=opts.fire_catchup)
    api(cluster, leader, "POST", "/api/v1/scheduler/reload")
    progress(f"fire_rate: {n} jobs loaded in {time.perf_counter() - started:.2f}s")
    t0 = float(math.ceil(time.time() + opts.warmup))
    t1 = t0 + opts.duration
    sampler = Sampler()
    sampler.process("scheduler", leader_pid(cluster, leader))
    for name in cluster.worker_names:
        pid = cluster.nodes[name].pid
        if pid:
            sampler.process(f"worker {name}", pid, include_children=True)
    pg_pid = env.postmaster_pid()
    if pg_pid:
        sampler.postgres("postgres", pg_pid)
    _sleep_until(t0)
    sampler.start()
    _sleep_until(t1)
    usage = sampler.stop()
    pgsql.pause_jobs(url, prefix)
    left = pgsql.wait_settled(url, prefix, t1, opts.drain)
    if left:
        notes.append(f"N={n}: {left} runs of the window not started {opts.drain:g}s after it")
    epoch_after = (cluster.cluster_info(leader) or {}).get("epoch")
    if epoch_after != epoch_before:
        notes.append(
            f"N={n}: leader changed during the window (epoch {epoch_before} -> {epoch_after})"
        )
    workers = [u for k, u in usage.items() if k.startswith("worker ")]
    usage["workers"] = Usage(sum(u.cpu_percent for u in workers), None, None)
    fires = pgsql.fires(url, prefix, t0, t1)
    stats = analyze(fires, n, t0, t1)
    stages = [summarize(ms) for ms in lateness_stages(fires, t0, t1)]
    left = pgsql.end_phase(url, prefix, opts.drain)  # no backlog into the next measurement
    if left:
        notes.append(f"N={n}: {left} runs still unfinished when the next measurement began")
    progress(
        f"fire_rate: chronoraft N={n}: {stats.fired_per_s:.0f}/s fired, {stats.missed} missed, "
        f"p99 {stats.late_ms.p99:.1f} ms"
    )
    return stats, stages, usage, notes


def run(env: BenchEnv, opts: Namespace) -> list[Table]:
    table = Table(
        f"Fire rate and lateness: N jobs `* * * * * *` running `true`, "
        f"{opts.fire_workers} workers, {opts.duration:g}s window",
        COLUMNS,
    )
    stages_table = Table(
        "Where chronoraft's lateness goes: each stage from slot to process, p50 / p99 ms",
        ["N", *(f"{stage} {q}" for stage in STAGES for q in ("p50", "p99"))],
    )
    peer_missing = None if opts.no_apscheduler else vs_apscheduler.available()
    ours: dict[int, FireStats] = {}
    theirs: dict[int, FireStats] = {}
    with env.cluster(
        NAME, workers=opts.fire_workers, worker_concurrency=opts.worker_concurrency
    ) as (cluster, url):
        for n in opts.sizes:
            stats, stages, usage, notes = measure_chronoraft(env, cluster, url, n, opts)
            table.rows.append(_row("chronoraft", n, stats, usage, "workers"))
            stages_table.add(n, *(v for stage in stages for v in (stage.median, stage.p99)))
            ours[n] = stats
            for note in notes:
                table.note(note)
            if opts.no_apscheduler or peer_missing:
                continue
            peer = vs_apscheduler.measure(env, n, opts.warmup, opts.duration, opts.aps_threads)
            table.rows.append(_row("APScheduler", n, peer.stats, peer.usage, "children"))
            theirs[n] = peer.stats
            table.add(
                "ratio chronoraft/APScheduler",
                n,
                None,
                ratio(stats.fired_per_s, peer.stats.fired_per_s),
                ratio(stats.fired_percent, peer.stats.fired_percent),
                None,
                ratio(stats.late_ms.median, peer.stats.late_ms.median),
                ratio(stats.late_ms.p99, peer.stats.late_ms.p99),
                ratio(stats.late_ms.max, peer.stats.late_ms.max),
                None,
                None,
                None,
                ratio(usage["postgres"].cpu_percent, peer.usage["postgres"].cpu_percent)
                if "postgres" in usage and "postgres" in peer.usage
                else None,
            )
            if peer.missed_events or peer.max_instance_skips or peer.errors:
                table.note(
                    f"APScheduler N={n}: {peer.missed_events} EVENT_JOB_MISSED, "
                    f"{peer.max_instance_skips} max_instances skips, {peer.errors} job errors "
                    "in the window"
                )
    table.note(
        "lateness = process start - slot time: chronoraft's runs.started_at is set by the "
        "worker right after the spawn returned; APScheduler's job function returns "
        "time.time() right after Popen, paired with EVENT_JOB_EXECUTED.scheduled_run_time"
    )
    table.note(
        "missed = slots in the window whose process never started (no run, skipped, "
        "EVENT_JOB_MISSED, max_instances, or not started by the end of the drain)"
    )
    table.note(
        "CPU % is of one core (200 % = both cores); sched = chronoraft's leader or the "
        "APScheduler process; spawn = chronoraft's workers incl. their `true` children, or "
        "APScheduler's `true` children only"
    )
    table.note(
        f"chronoraft: 3 controllers, {opts.fire_workers} workers x {opts.worker_concurrency} "
        f"slots, catchup_window {opts.fire_catchup:g} s (a slot not started within "
        f"max(catchup_window, 2 s) is skipped), log level {env.log_level}; "
        f"APScheduler {_aps_version()}: BackgroundScheduler, "
        f"SQLAlchemyJobStore, ThreadPoolExecutor({opts.aps_threads}), defaults otherwise "
        "(misfire_grace_time 1 s, max_instances 1); each measured alone, the other idle"
    )
    bare = env.results.get("spawn_rate", {}).get(opts.fire_workers)
    if bare:
        floors = ", ".join(
            f"N={n}: {burst_start_floor_ms(n, bare):.0f} ms" for n in opts.sizes if n < bare
        )
        table.note(
            f"floor: every job's slot is the same instant, and {opts.fire_workers} processes "
            f"spawn `true` at {bare:.0f}/s here (limits table), so no scheduler's p99 "
            f"lateness can be below 0.99 N / {bare:.0f} s: {floors or '-'}; N >= {bare:.0f} "
            "cannot all start within the second at all"
        )
    verdict = sustained_target_note(
        ours, theirs, lambda n: burst_start_floor_ms(n, bare) if bare else math.nan
    )
    if verdict:
        table.note(verdict)
    if peer_missing:
        table.note(f"APScheduler side skipped: {peer_missing}")
    stages_table.note(
        "from the runs of the window: created = the tick's INSERT (runs.created_at, the start "
        "of its transaction), dispatched = the start of the dispatch transaction that placed "
        "the run (runs.dispatched_at), started = the worker's clock right after the spawn"
    )
    stages_table.note(
        f"a dispatch batch holds up to {DISPATCH_BATCH} runs, each worker "
        f"{opts.worker_concurrency} slots: runs past the free slots wait in 'created -> "
        "dispatched' for results to free some; runs queued behind others on a busy worker "
        "wait in 'dispatched -> started'"
    )
    return [table, stages_table]


def _aps_version() -> str:
    try:
        from importlib.metadata import version

        return version("apscheduler")
    except Exception:  # noqa: BLE001 - only decoration for a note
        return "?"
