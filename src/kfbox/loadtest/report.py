"""What a load test measured: throughput, latency percentiles, status counts, a histogram
and per-second series for the chart. Plain data, so the CLI can print it as a table or
as JSON and the plot can draw it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

PERCENTILES = (50, 90, 99)


@dataclasses.dataclass(frozen=True)
class Second:
    """Replies that completed during one second of the run."""

    start: float
    count: int
    p50: float
    p99: float


@dataclasses.dataclass(frozen=True)
class Report:
    url: str
    method: str
    concurrency: int
    duration: float
    latencies: list[float]
    """Seconds per reply, sorted; transport errors have no latency."""
    statuses: dict[int, int]
    errors: dict[str, int]
    timeline: list[Second]
    replicas: list[tuple[float, float]]
    interrupted: bool = False

    @classmethod
    def build(cls, *, url: str, method: str, concurrency: int, duration: float, finished_at: Sequence[float],
              latencies: Sequence[float], statuses: dict[int, int], errors: dict[str, int],
              replicas: list[tuple[float, float]], interrupted: bool) -> Report:
        return cls(url=url, method=method, concurrency=concurrency, duration=duration,
                   latencies=sorted(latencies), statuses=dict(sorted(statuses.items())),
                   errors=dict(sorted(errors.items(), key=lambda kv: -kv[1])),
                   timeline=per_second(finished_at, latencies), replicas=list(replicas), interrupted=interrupted)

    @property
    def responses(self) -> int:
        return len(self.latencies)

    @property
    def total(self) -> int:
        return self.responses + sum(self.errors.values())

    @property
    def failed(self) -> int:
        """Requests without a successful reply: transport errors plus status >= 400."""
        return sum(self.errors.values()) + sum(n for code, n in self.statuses.items() if code >= 400)

    @property
    def rps(self) -> float:
        return self.total / self.duration if self.duration > 0 else 0.0

    @property
    def mean(self) -> float:
        return sum(self.latencies) / len(self.latencies) if self.latencies else math.nan

    @property
    def max(self) -> float:
        return self.latencies[-1] if self.latencies else math.nan

    @property
    def min(self) -> float:
        return self.latencies[0] if self.latencies else math.nan

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p)

    def histogram(self, buckets: int = 10) -> list[tuple[float, int]]:
        """(upper bound in seconds, count) over equal-width buckets from the fastest to the slowest."""
        if not self.latencies:
            return []
        low, high = self.latencies[0], self.latencies[-1]
        width = (high - low) / buckets or 1e-9
        counts = [0] * buckets
        for value in self.latencies:
            counts[min(int((value - low) / width), buckets - 1)] += 1
        return [(low + width * (i + 1), counts[i]) for i in range(buckets)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``--output json``: times in seconds, rounded to microseconds."""
        def r(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 6)

        return {
            "url": self.url, "method": self.method, "concurrency": self.concurrency,
            "duration_seconds": r(self.duration), "total": self.total, "responses": self.responses,
            "failed": self.failed, "requests_per_second": round(self.rps, 2), "interrupted": self.interrupted,
            "latency_seconds": {"mean": r(self.mean), "min": r(self.min),
                                **{f"p{p}": r(self.percentile(p)) for p in PERCENTILES}, "max": r(self.max)},
            "status_codes": {str(code): n for code, n in self.statuses.items()},
            "errors": self.errors,
            "histogram": [{"le": r(bound), "count": n} for bound, n in self.histogram()],
            "timeline": [dataclasses.asdict(s) for s in self.timeline],
            "replicas": [{"t": round(t, 3), "replicas": v} for t, v in self.replicas],
        }


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence (NaN when empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def per_second(finished_at: Sequence[float], latencies: Sequence[float]) -> list[Second]:
    """Group replies by the second they completed in, for latency-over-time charts."""
    buckets: dict[int, list[float]] = {}
    for when, latency in zip(finished_at, latencies, strict=True):
        buckets.setdefault(int(when), []).append(latency)
    seconds = []
    for start in sorted(buckets):
        values = sorted(buckets[start])
        seconds.append(Second(start=float(start), count=len(values), p50=percentile(values, 50),
                              p99=percentile(values, 99)))
    return seconds
