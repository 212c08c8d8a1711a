"""Prometheus metrics of one controller (a per-process registry, no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RETRY_CAUSES = ("result", "worker_lost")


class ControllerMetrics:
    """Names are documented in README (Metrics)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.is_leader = Gauge(
            "chronoraft_leader", "1 while this node runs the leader loop", registry=r
        )
        self.epoch = Gauge(
            "chronoraft_epoch", "Raft term of this node's current leadership", registry=r
        )
        self.leaderships = Counter(
            "chronoraft_leaderships_total", "Times this node became leader", registry=r
        )
        self.fenced = Counter(
            "chronoraft_fenced_total",
            "Leader loops stopped because a newer epoch exists",
            registry=r,
        )
        self.heap_jobs = Gauge(
            "chronoraft_heap_jobs", "Jobs in the leader's schedule heap", registry=r
        )
        self.slots = Counter(
            "chronoraft_slots_total", "Slots the leader decided, by action", ["action"], registry=r
        )
        self.dispatched = Counter(
            "chronoraft_dispatches_total", "RunTask calls by outcome", ["outcome"], registry=r
        )
        self.dispatch_lateness = Histogram(
            "chronoraft_dispatch_lateness_seconds",
            "Worker start time minus slot time, for scheduled runs",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.dispatch_latency = Histogram(
            "chronoraft_dispatch_rpc_seconds",
            "RunTask round trip",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.results = Counter(
            "chronoraft_results_total",
            "Worker results received, by outcome",
            ["outcome"],
            registry=r,
        )
        self.reaped = Counter(
            "chronoraft_reaped_total",
            "Runs taken back from lost or silent workers",
            ["reason"],
            registry=r,
        )
        self.db_errors = Counter(
            "chronoraft_db_errors_total", "PostgreSQL errors seen by the leader loop", registry=r
        )
        self.tick_seconds = Histogram(
            "chronoraft_tick_seconds",
            "Time to fire one batch of due slots",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.grpc_errors = Counter(
            "chronoraft_grpc_errors_total", "Failed calls to workers, by code", ["code"], registry=r
        )
        self.retries = Counter(
            "chronoraft_retries_total",
            "Failed attempts given another try, by cause (result: the worker reported a "
            "failure or timeout; worker_lost: the worker stopped heartbeating)",
            ["cause"],
            registry=r,
        )
        for cause in RETRY_CAUSES:
            self.retries.labels(cause)

        # Read from PostgreSQL when /metrics is scraped (controller/scrape.py): the same on
        # every controller, so any one of them, or all behind one job, can be scraped.
        self.runs = Gauge(
            "chronoraft_runs",
            "Unfinished runs by state (waiting, pending, dispatched, running), read at scrape",
            ["state"],
            registry=r,
        )
        self.cluster_epoch = Gauge(
            "chronoraft_cluster_epoch",
            "Epoch of the leadership claimed in PostgreSQL (read at scrape); rises on failover",
            registry=r,
        )
        self.workers = Gauge(
            "chronoraft_workers",
            "Registered workers by status: alive, lost, draining (read at scrape)",
            ["status"],
            registry=r,
        )
        self.worker_running = Gauge(
            "chronoraft_fleet_running",
            "Runs each live worker reports running (read at scrape)",
            ["worker"],
            registry=r,
        )
        self.worker_capacity = Gauge(
            "chronoraft_fleet_capacity",
            "Runs each live worker may run at once (read at scrape)",
            ["worker"],
            registry=r,
        )
        self.db_up = Gauge(
            "chronoraft_db_up",
            "1 when the last scrape could read PostgreSQL; the read-at-scrape gauges keep "
            "their previous values while it is 0",
            registry=r,
        )
        self.dag_runs = Counter(
            "chronoraft_dag_runs_finished_total",
            "DAG runs the leader finished, by final state",
            ["state"],
            registry=r,
        )
