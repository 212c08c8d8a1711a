"""Reading a histogram out of a controller's Prometheus /metrics text.

Parsing is prometheus_client's; this only picks one histogram's buckets, sum and count and
subtracts two scrapes, which is how a window's tick cost is obtained without touching the
product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Histogram:
    buckets: tuple[tuple[float, float], ...]
    """Cumulative ``(le, count)`` pairs sorted by ``le``, the last one ``+Inf``."""
    sum: float
    count: float

    def minus(self, earlier: Histogram) -> Histogram:
        """What was observed between two scrapes of the same process."""
        before = dict(earlier.buckets)
        return Histogram(
            buckets=tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
            sum=self.sum - earlier.sum,
            count=self.count - earlier.count,
        )

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan


EMPTY = Histogram((), 0.0, 0.0)


def histogram(text: str, name: str) -> Histogram:
    """The histogram ``name`` (without ``_bucket``/``_sum``/``_count``); empty if absent."""
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        buckets: list[tuple[float, float]] = []
        total = count = 0.0
        for sample in family.samples:
            if sample.name == name + "_bucket":
                buckets.append((float(sample.labels["le"]), float(sample.value)))
            elif sample.name == name + "_sum":
                total = float(sample.value)
            elif sample.name == name + "_count":
                count = float(sample.value)
        return Histogram(tuple(sorted(buckets)), total, count)
    return EMPTY
