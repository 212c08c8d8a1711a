"""Prometheus metrics of one controller (a per-process registry, no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


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
