"""Latencies of a load test in an HDR histogram: constant memory at any rate and duration.

A list of every latency grows by 8 bytes a reply (290 MB for an hour at 10k req/s); the
histogram is a fixed ~190 KB counts array with 3 significant digits (every percentile within
0.1% of the exact value) from 1 µs to one hour. Values are recorded in whole microseconds.

Example::

    lat = Latencies()
    lat.record(0.0042)
    lat.percentile(99)   # 0.0042 (seconds)
"""

from __future__ import annotations

import bisect
import math

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour; a longer wait is recorded as one hour
DIGITS = 3


class Latencies:
    """Seconds in, seconds out; microsecond resolution inside."""

    def __init__(self) -> None:
        self._hist = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)

    def record(self, seconds: float) -> None:
        self._hist.record_value(min(max(int(seconds * 1_000_000), LOWEST_US), HIGHEST_US))

    def add(self, other: Latencies) -> None:
        self._hist.add(other._hist)

    def reset(self) -> None:
        self._hist = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)  # a fresh array: cheaper than zeroing

    @property
    def count(self) -> int:
        return int(self._hist.get_total_count())

    def __len__(self) -> int:
        return self.count

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile in seconds (NaN when empty)."""
        if not self.count:
            return math.nan
        return int(self._hist.get_value_at_percentile(p)) / 1_000_000

    def percentiles(self, ps: tuple[float, ...]) -> dict[float, float]:
        """Several percentiles in one pass over the counts."""
        if not self.count:
            return {p: math.nan for p in ps}
        found = self._hist.get_percentile_to_value_dict(list(ps))
        return {p: found[p] / 1_000_000 for p in ps}

    @property
    def mean(self) -> float:
        return self._hist.get_mean_value() / 1_000_000 if self.count else math.nan

    @property
    def min(self) -> float:
        return self._hist.get_min_value() / 1_000_000 if self.count else math.nan

    @property
    def max(self) -> float:
        return self._hist.get_max_value() / 1_000_000 if self.count else math.nan

    def buckets(self, buckets: int = 10) -> list[tuple[float, int]]:
        """(upper bound in seconds, count) over buckets from the fastest to the slowest, each bound the last one
        times the same factor: with equal widths, a few slow outliers (a 100 ms stall among 1 ms replies) put
        nearly every reply in the first of ten buckets and the shape of the rest is lost."""
        if not self.count:
            return []
        low, high = self.min, self.max
        factor = (high / low) ** (1 / buckets) if high > low else 1.0
        bounds = [low * factor ** (i + 1) for i in range(buckets - 1)] + [high]
        counts = [0] * buckets
        for item in self._hist.get_recorded_iterator():
            value = item.value_iterated_to / 1_000_000
            counts[min(bisect.bisect_left(bounds, value), buckets - 1)] += item.count_added_in_this_iter_step
        return list(zip(bounds, counts, strict=True))
