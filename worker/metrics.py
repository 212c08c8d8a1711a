"""Prometheus metrics of one worker, in a registry of its own.

A per-instance ``CollectorRegistry`` (not the process-global default) lets tests run several
workers in one interpreter and keeps library collectors out of what a worker exports.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class WorkerMetrics:
    """The worker's counters and gauges; modules get this object instead of globals."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tasks_started = Counter(
            "chronoraft_worker_tasks_started_total", "Attempts started by this worker.", registry=r
        )
        self.tasks_finished = Counter(
            "chronoraft_worker_tasks_finished_total",
            "Attempts finished, by terminal state.",
            ["state"],
            registry=r,
        )
        self.tasks_rejected = Counter(
            "chronoraft_worker_tasks_rejected_total",
            "RunTask calls refused, by reason (stale_epoch, draining, at_capacity, superseded).",
            ["reason"],
            registry=r,
        )
        self.running = Gauge("chronoraft_worker_running", "Attempts running right now.", registry=r)
        self.capacity = Gauge(
            "chronoraft_worker_capacity", "Attempts this worker runs at once.", registry=r
        )
        self.spool_pending = Gauge(
            "chronoraft_worker_spool_pending",
            "Finished results waiting for a controller's acknowledgement.",
            registry=r,
        )
        self.start_lateness = Histogram(
            "chronoraft_worker_start_lateness_seconds",
            "Process start time minus the slot's scheduled time.",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.report_errors = Counter(
            "chronoraft_worker_report_errors_total",
            "Failed attempts to deliver a result to a controller.",
            registry=r,
        )
        self.heartbeat_errors = Counter(
            "chronoraft_worker_heartbeat_errors_total",
            "Heartbeats no controller answered.",
            registry=r,
        )
        self.highest_epoch = Gauge(
            "chronoraft_worker_highest_epoch",
            "Highest leader epoch seen; RunTask from lower epochs is refused.",
            registry=r,
        )
        self.draining = Gauge(
            "chronoraft_worker_draining", "1 while the worker is shutting down.", registry=r
        )

    def render(self) -> bytes:
        """The exposition text for /metrics."""
        return generate_latest(self.registry)
