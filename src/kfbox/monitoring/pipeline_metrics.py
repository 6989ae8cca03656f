"""Pipeline series read from the run table at scrape time: runs by state (the queue) and task durations.

The engine keeps its own counters (``kfbox_pipeline_runs_finished_total``, ``..._running``);
these two come from the database, so they are right after a server restart too, and
need no hook in the engine. The table is read at most once per ``ttl`` seconds however
often Prometheus scrapes.

Example::

    platform.metrics.register(PipelineCollector(platform.db))
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from kfbox.db import Database
from kfbox.monitoring.history import quantile
from kfbox.pipelines.tables import Run, Task

STATES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELING", "CANCELED")
TASK_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class PipelineCollector(Collector):
    """``kfbox_pipeline_runs{state}`` and ``kfbox_pipeline_task_duration_seconds{kind,state}``."""

    def __init__(self, db: Database, ttl: float = 1.0) -> None:
        self.db = db
        self.ttl = ttl
        self._read_at = -1e9
        self._counts: dict[str, int] = {}
        self._watermark = int(time.time() * 1000)  # tasks finished before this server started: not observed
        self._lock = threading.Lock()
        self.tasks = Histogram("kfbox_pipeline_task_duration_seconds", "Run time of finished pipeline tasks.",
                               ["kind", "state"], buckets=TASK_BUCKETS, registry=CollectorRegistry())

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if time.monotonic() - self._read_at > self.ttl:
                self._read_at = time.monotonic()
                with contextlib.suppress(SQLAlchemyError):  # a busy or migrating database: last values stay
                    self._refresh()
        family = GaugeMetricFamily("kfbox_pipeline_runs", "Pipeline runs by state (PENDING is the queue).",
                                   labels=["state"])
        for state in STATES:
            family.add_metric([state], float(self._counts.get(state, 0)))
        yield family
        yield from self.tasks.collect()

    def summary(self) -> dict[str, Any]:
        """For the dashboard: runs by state and p50/p95 task duration (seconds) by kind and state."""
        list(self.collect())  # refresh if stale
        tasks = []
        for family in self.tasks.collect():
            grouped: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    key = (sample.labels["kind"], sample.labels["state"])
                    grouped.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
            for (kind, state), buckets in sorted(grouped.items()):
                tasks.append({"kind": kind, "state": state, "count": int(buckets[-1][1]),
                              "p50": quantile(0.5, buckets), "p95": quantile(0.95, buckets)})
        return {"runs": {state: self._counts.get(state, 0) for state in STATES}, "tasks": tasks}

    def _refresh(self) -> None:
        with self.db.read() as s:
            self._counts = {state: n for state, n in s.execute(select(Run.state, func.count()).group_by(Run.state))}
            rows = s.execute(select(Task.kind, Task.state, Task.started_ms, Task.finished_ms)
                             .where(Task.finished_ms > self._watermark, Task.started_ms.is_not(None))).all()
        for kind, state, started, finished in rows:
            if started is None or finished is None:
                continue
            self.tasks.labels(kind, state).observe(max(0, finished - started) / 1000)
            self._watermark = max(self._watermark, finished)
