"""Order statistics for benchmark samples (pure functions, no I/O).

One definition of "p99" for every table, so chronoraft's and APScheduler's columns and
older runs in docs/benchmarks.md stay comparable: nearest rank on the sorted samples,
index ``round(p/100 * (n - 1))`` (the same as the first failover benchmark used).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by nearest rank; NaN for no samples."""
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class Summary:
    """min / median / p99 / max of one metric, and how many samples they come from."""

    n: int
    min: float
    median: float
    p99: float
    max: float

    def scaled(self, factor: float) -> Summary:
        """The same summary in other units (e.g. seconds to milliseconds)."""
        return Summary(
            self.n,
            self.min * factor,
            self.median * factor,
            self.p99 * factor,
            self.max * factor,
        )


def summarize(values: Sequence[float]) -> Summary:
    """Summary of ``values``; every statistic is NaN when there are none."""
    if not values:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    ordered = sorted(values)
    return Summary(
        n=len(ordered),
        min=ordered[0],
        median=percentile(ordered, 50),
        p99=percentile(ordered, 99),
        max=ordered[-1],
    )


def ratio(numerator: float | None, denominator: float | None) -> float:
    """``numerator / denominator``, NaN when either is missing or the denominator is 0."""
    if numerator is None or denominator is None:
        return math.nan
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def burst_start_floor_ms(due_at_once: int, spawn_rate: float, q: float = 0.99) -> float:
    """The least lateness at quantile ``q`` when ``due_at_once`` processes are due at the
    same instant and the machine starts them at ``spawn_rate`` per second: the k-th cannot
    start before k / spawn_rate. Every per-second job shares the same slot instants, so this
    is the floor under any scheduler's p99 in the fire-rate benchmark; nan without a rate."""
    if spawn_rate <= 0 or math.isnan(spawn_rate):
        return math.nan
    return math.ceil(q * due_at_once) / spawn_rate * 1000.0


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Upper bound of the bucket holding quantile ``q`` of a cumulative histogram.

    ``buckets`` are Prometheus ``(le, cumulative count)`` pairs, sorted by ``le``, the last
    one ``+Inf``. A bucket bound is all a histogram knows, so this reports the bound (an
    upper estimate), not an interpolated value.
    """
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    for le, count in buckets:
        if count >= rank:
            return le
    return buckets[-1][0]
