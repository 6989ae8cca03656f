"""What a load test measured: throughput, latency percentiles, status counts, a histogram
and per-second series for the chart. Plain data, so the CLI can print it as a table or
as JSON and the plot can draw it.

Latencies live in an HDR histogram (:mod:`kfbox.loadtest.latency`), and each second of the
run is folded into one :class:`Second` as it ends, so a report's size depends on the
run's length in seconds, never on its number of requests.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from kfbox.loadtest.latency import Latencies

PERCENTILES = (50, 90, 99)
SECOND_PERCENTILES = (50.0, 95.0, 99.0)


@dataclasses.dataclass(frozen=True)
class Second:
    """Replies (and failures) that completed during one second of the run."""

    start: float
    count: int
    p50: float
    p99: float
    p95: float = math.nan
    errors: int = 0
    """Requests that got no reply (transport errors, timeouts)."""
    server_errors: int = 0
    """Replies with a status >= 500."""
    inflight: int = 0
    """Requests in flight when the second ended."""

    @property
    def success(self) -> float:
        """Share of the second's requests answered below 500 (the dashboard's success rate)."""
        sent = self.count + self.errors
        return (self.count - self.server_errors) / sent if sent else math.nan


@dataclasses.dataclass(frozen=True)
class Sample:
    """The InferenceService's replicas at ``t`` seconds into the run."""

    t: float
    ready: float
    desired: float | None = None


@dataclasses.dataclass(frozen=True)
class Report:
    url: str
    method: str
    concurrency: int
    duration: float
    latencies: Latencies
    """Seconds per reply; transport errors have no latency."""
    statuses: dict[int, int]
    errors: dict[str, int]
    timeline: list[Second]
    replicas: list[Sample]
    interrupted: bool = False
    started_at: float = 0.0
    """Unix time of the start, for a chart on the same clock as the dashboard's."""

    @classmethod
    def build(cls, *, url: str, method: str, concurrency: int, duration: float, latencies: Latencies,
              statuses: dict[int, int], errors: dict[str, int], timeline: list[Second],
              replicas: list[Sample], interrupted: bool, started_at: float = 0.0) -> Report:
        return cls(url=url, method=method, concurrency=concurrency, duration=duration,
                   latencies=latencies, statuses=dict(sorted(statuses.items())),
                   errors=dict(sorted(errors.items(), key=lambda kv: -kv[1])),
                   timeline=list(timeline), replicas=list(replicas), interrupted=interrupted,
                   started_at=started_at)

    @property
    def responses(self) -> int:
        return self.latencies.count

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
        return self.latencies.mean

    @property
    def max(self) -> float:
        return self.latencies.max

    @property
    def min(self) -> float:
        return self.latencies.min

    def percentile(self, p: float) -> float:
        return self.latencies.percentile(p)

    def histogram(self, buckets: int = 10) -> list[tuple[float, int]]:
        """(upper bound in seconds, count) over log-spaced buckets from the fastest to the slowest."""
        return self.latencies.buckets(buckets)

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
            "started_at": round(self.started_at, 3),
            "timeline": [{k: r(v) if isinstance(v, float) else v for k, v in dataclasses.asdict(s).items()}
                         for s in self.timeline],
            "replicas": [{"t": round(s.t, 3), "replicas": s.ready, "desired": s.desired} for s in self.replicas],
        }

