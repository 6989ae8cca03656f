"""kfbox's own bounded chart history: the last hour of each InferenceService, sampled every few seconds.

Used by the live charts when no Prometheus runs. Memory is fixed by construction: each
tracked InferenceService owns ``len(FIELDS)`` arrays of ``slots`` doubles (plus one shared
timestamp array), written round-robin; at most ``max_services`` are tracked. With the
defaults (5 s, one hour: 720 slots; 8 fields) that is 720 x 8 x 8 B = 46 KB per
InferenceService, 9.2 MB at the 200-service cap, whatever the request rate.

Each sample is derived from the gateway's cumulative counters and histogram (the same
ones ``/metrics`` exports), so an hour at 1,000 req/s costs what an idle hour does.

Example::

    history = History(interval=5.0, horizon=3600.0)
    history.sample(serving_manager, time.time())
    history.series(("default", "iris"))   # {"t": [...], "rps": [...], "p99": [...], ...}
"""

from __future__ import annotations

import math
from array import array
from typing import Any

FIELDS = ("rps", "success", "p50", "p95", "p99", "inflight", "desired", "ready")
PIPELINE_FIELDS = ("pending", "running", "succeeded", "failed")
PIPELINES: tuple[str, str] = ("", "pipelines")  # the pipelines' ring, beside the services' ones
MAX_SERVICES = 200
Key = tuple[str, str]


class _Ring:
    def __init__(self, slots: int, fields: tuple[str, ...] = FIELDS) -> None:
        self.values = {field: array("d", [math.nan]) * slots for field in fields}


class History:
    def __init__(self, interval: float = 5.0, horizon: float = 3600.0, max_services: int = MAX_SERVICES) -> None:
        self.interval = interval
        self.slots = max(2, int(horizon / interval))
        self.max_services = max_services
        self.times = array("d", [math.nan]) * self.slots
        self.cursor = 0  # next slot to write
        self.rings: dict[Key, _Ring] = {}
        self._previous: dict[Key, tuple[float, float, float, list[tuple[float, float]]]] = {}

    def bytes_used(self) -> int:
        """The arrays' payload: what the docstring's bound counts (plus the pipelines' ring once sampled)."""
        return self.slots * 8 + sum(len(r.values) * self.slots * 8 for r in self.rings.values())

    def sample_pipelines(self, counts: dict[str, int]) -> None:
        """Record run counts by state into the slot :meth:`sample` last wrote."""
        ring = self.rings.get(PIPELINES)
        if ring is None:
            ring = self.rings[PIPELINES] = _Ring(self.slots, PIPELINE_FIELDS)
        slot = (self.cursor - 1) % self.slots
        for field in PIPELINE_FIELDS:
            ring.values[field][slot] = float(counts.get(field.upper(), 0))

    def sample(self, serving: Any, now: float) -> None:
        """Record one slot for every InferenceService from the manager's counters."""
        counts, buckets = _cumulative(serving)
        slot = self.cursor
        self.times[slot] = now
        live = set(serving.deployments)
        for key in list(self.rings):
            if key not in live and key != PIPELINES:
                del self.rings[key]
                self._previous.pop(key, None)
        for key in sorted(live):
            ring = self.rings.get(key)
            if ring is None:
                if len(self.rings) >= self.max_services:
                    continue
                ring = self.rings[key] = _Ring(self.slots)
            total, errors = counts.get(key, (0.0, 0.0))
            cumulative = buckets.get(key, [])
            point = self._point(key, now, total, errors, cumulative, serving.deployments[key])
            for field in FIELDS:
                ring.values[field][slot] = point.get(field, math.nan)
            self._previous[key] = (now, total, errors, cumulative)
        self.cursor = (slot + 1) % self.slots

    def _point(self, key: Key, now: float, total: float, errors: float, cumulative: list[tuple[float, float]],
               deployment: Any) -> dict[str, float]:
        pools = list(deployment.pools.values())
        replicas = [r for pool in pools for r in pool.replicas]
        point = {"inflight": float(sum(p.inflight for p in pools)), "ready": float(sum(r.ready for r in replicas)),
                 "desired": float(sum(p.desired for p in pools))}
        previous = self._previous.get(key)
        if previous is None:
            return point
        at, before, errors_before, old = previous
        done = total - before
        elapsed = max(now - at, 1e-9)
        point["rps"] = max(done, 0.0) / elapsed
        if done > 0:
            failed = errors - errors_before
            point["success"] = 1.0 - max(failed, 0.0) / done
            delta = [(le, c - (old[i][1] if i < len(old) else 0.0)) for i, (le, c) in enumerate(cumulative)]
            for q, field in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
                point[field] = quantile(q, delta) * 1000
        return point

    def series(self, key: Key, minutes: float = 60.0) -> dict[str, list[float | None]]:
        """Oldest first, the slots within the last ``minutes`` (NaN as None, for JSON)."""
        ring = self.rings.get(key)
        fields = PIPELINE_FIELDS if key == PIPELINES else FIELDS
        order = [(self.cursor + i) % self.slots for i in range(self.slots)]
        newest = self.times[(self.cursor - 1) % self.slots]
        keep = [i for i in order if not math.isnan(self.times[i]) and newest - self.times[i] <= minutes * 60]
        out: dict[str, list[float | None]] = {"t": [self.times[i] for i in keep]}
        for field in fields:
            values = ring.values[field] if ring else None
            out[field] = [None if values is None or math.isnan(values[i]) else round(values[i], 4) for i in keep]
        return out


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's ``histogram_quantile`` over (upper bound, cumulative count) pairs; NaN when empty."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            width = count - below
            return lower + (bound - lower) * ((rank - below) / width if width > 0 else 1.0)
        lower, below = bound, count
    return lower


def _cumulative(serving: Any) -> tuple[dict[Key, tuple[float, float]], dict[Key, list[tuple[float, float]]]]:
    counts: dict[Key, tuple[float, float]] = {}
    for family in serving.metrics.requests.collect():
        for s in family.samples:
            if not s.name.endswith("_total"):
                continue
            key = (s.labels["namespace"], s.labels["name"])
            total, errors = counts.get(key, (0.0, 0.0))
            counts[key] = (total + s.value, errors + (s.value if s.labels["code"].startswith("5") else 0.0))
    buckets: dict[Key, list[tuple[float, float]]] = {}
    for family in serving.metrics.latency.collect():
        for s in family.samples:
            if s.name.endswith("_bucket"):
                buckets.setdefault((s.labels["namespace"], s.labels["name"]), []).append(
                    (float(s.labels["le"]), s.value))
    return counts, buckets
