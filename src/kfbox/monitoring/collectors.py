"""Scrape-time collectors: child-process CPU/RSS, Knative-named serving series.

Nothing here runs on the request path: each collector reads state the server already keeps
(``/proc``, the serving histograms, the run table) when ``/metrics`` is scraped.

The Knative view re-exposes the gateway's own counters under the names the Knative
queue-proxy and autoscaler export on a KServe cluster (``revision_app_request_count``,
``revision_app_request_latencies_bucket`` in milliseconds, ``autoscaler_desired_pods``, ...)
with the same label names (``namespace_name``, ``configuration_name``, ``revision_name``,
``response_code_class``), so one PromQL query works here and there. See docs/metrics.md.

Example::

    platform.metrics.register(ChildProcessCollector(platform))

The run queue and task durations are in :mod:`kfbox.monitoring.pipeline_metrics`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from kfbox.server.platform import Platform
from kfbox.server.processes import read_proc

ProcessRow = tuple[dict[str, str], int]
"""Labels (process, namespace, name, revision) and the pid."""


def child_processes(platform: Platform) -> list[ProcessRow]:
    """The server, each pipeline worker and each model replica, with what they are."""
    rows: list[ProcessRow] = [({"process": "server", "namespace": "", "name": "", "revision": ""}, os.getpid())]
    pipelines = platform.services.pipelines
    if pipelines is not None:
        for run_id, active in list(pipelines.supervisor.active.items()):
            rows.append(({"process": "worker", "namespace": "", "name": run_id, "revision": ""},
                         active.child.pid))
    serving = platform.services.serving
    if serving is not None:
        for (namespace, name), deployment in list(serving.deployments.items()):
            for number, pool in list(deployment.pools.items()):
                for replica in list(pool.replicas):
                    rows.append(({"process": "replica", "namespace": namespace, "name": name,
                                  "revision": str(number)}, replica.child.pid))
    return rows


class ChildProcessCollector(Collector):
    """``kfbox_process_cpu_seconds_total`` and ``kfbox_process_resident_memory_bytes`` per process.

    The server itself also exports the standard ``process_*`` series (prometheus_client's
    ProcessCollector); this one adds the children, which no client library in them can see as
    "part of kfbox" (a replica's kserve exports its own ``process_*`` on its own port too).
    """

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterable[Metric]:
        # "process", not "component": the scrape target's own label is "component"
        labels = ["process", "namespace", "name", "revision", "pid"]
        cpu = CounterMetricFamily("kfbox_process_cpu_seconds", "User and system CPU time of kfbox's processes.",
                                  labels=labels)
        rss = GaugeMetricFamily("kfbox_process_resident_memory_bytes", "Resident memory of kfbox's processes.",
                                labels=labels)
        for row, pid in child_processes(self.platform):
            found = read_proc(pid)
            if found is None:
                continue
            values = [row["process"], row["namespace"], row["name"], row["revision"], str(pid)]
            cpu.add_metric(values, found[0])
            rss.add_metric(values, float(found[1]))
        yield cpu
        yield rss


def _code_class(code: str) -> str:
    return f"{code[0]}xx" if code[:1].isdigit() else "grpc"


def revision_name(name: str, number: int) -> str:
    """KServe's Knative revision name for predictor revision ``number``: ``iris-predictor-00001``."""
    return f"{name}-predictor-{number:05d}"


class KnativeCollector(Collector):
    """The gateway's series under the Knative queue-proxy/autoscaler names and labels.

    kfbox measures per InferenceService at the gateway; the revision label is the revision
    serving the most traffic (its latest ready one), as a canary split is not measured apart.
    """

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterable[Metric]:
        serving = self.platform.services.serving
        if serving is None:
            return
        keys = ["namespace_name", "service_name", "configuration_name", "revision_name"]
        revisions = {key: _labels(key, deployment) for key, deployment in list(serving.deployments.items())}
        # untyped, as Knative's OpenCensus exporter writes it: a counter here would gain a _total suffix
        count = UnknownMetricFamily("revision_app_request_count", "Requests answered, by response code "
                                    "(Knative queue-proxy name).", labels=[*keys, "response_code",
                                                                             "response_code_class"])
        for sample in _samples(serving.metrics.requests, "_total"):
            key = (sample.labels["namespace"], sample.labels["name"])
            base = revisions.get(key) or _labels(key, None)
            code = sample.labels["code"]
            count.add_metric([*base, code, _code_class(code)], sample.value)
        yield count
        yield from self._latency(serving, revisions, keys)
        yield from self._gauges(serving, revisions, keys)

    def _latency(self, serving: Any, revisions: dict[tuple[str, str], list[str]],
                 keys: list[str]) -> Iterator[Metric]:
        family = HistogramMetricFamily("revision_app_request_latencies", "Request latency in milliseconds "
                                       "(Knative queue-proxy name and unit).", labels=keys)
        grouped: dict[tuple[str, str], dict[str, Any]] = {}
        for metric in serving.metrics.latency.collect():
            for sample in metric.samples:
                key = (sample.labels["namespace"], sample.labels["name"])
                entry = grouped.setdefault(key, {"buckets": [], "sum": 0.0})
                if sample.name.endswith("_bucket"):
                    le = sample.labels["le"]
                    bound = "+Inf" if le == "+Inf" else _ms(float(le))
                    entry["buckets"].append((bound, sample.value))
                elif sample.name.endswith("_sum"):
                    entry["sum"] = sample.value * 1000
        for key, entry in grouped.items():
            family.add_metric(revisions.get(key) or _labels(key, None), entry["buckets"], entry["sum"])
        yield family

    def _gauges(self, serving: Any, revisions: dict[tuple[str, str], list[str]],
                keys: list[str]) -> Iterator[Metric]:
        helps = {"autoscaler_desired_pods": "Replicas the autoscaler wants.",
                 "autoscaler_actual_pods": "Replicas ready to serve.",
                 "autoscaler_not_ready_pods": "Replicas started and not yet ready.",
                 "autoscaler_pending_pods": "Replicas not yet running (kfbox: the same as not ready; no scheduler).",
                 "autoscaler_stable_request_concurrency": "Requests in flight (kfbox: now, not averaged).",
                 "kfbox_serving_min_replicas": "spec.predictor.minReplicas of the newest revision.",
                 "kfbox_serving_max_replicas": "spec.predictor.maxReplicas of the newest revision."}
        families = {name: GaugeMetricFamily(name, text, labels=keys) for name, text in helps.items()}
        for key, deployment in list(serving.deployments.items()):
            pools = list(deployment.pools.values())
            replicas = [r for pool in pools for r in pool.replicas]
            ready = sum(1 for r in replicas if r.ready)
            values = {"autoscaler_desired_pods": _gauge(serving.metrics.desired, key),
                      "autoscaler_actual_pods": float(ready),
                      "autoscaler_not_ready_pods": float(len(replicas) - ready),
                      "autoscaler_pending_pods": float(len(replicas) - ready),
                      "autoscaler_stable_request_concurrency": float(sum(p.inflight for p in pools))}
            if deployment.pools:
                spec = deployment.pools[max(deployment.pools)].spec
                values.update(kfbox_serving_min_replicas=float(spec.min_replicas),
                              kfbox_serving_max_replicas=float(spec.max_replicas))
            for name, value in values.items():  # a deployment without a revision yet has no min/max
                families[name].add_metric(revisions[key], value)
        yield from families.values()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g}"


def _labels(key: tuple[str, str], deployment: Any) -> list[str]:
    namespace, name = key
    number = max(deployment.pools) if deployment is not None and deployment.pools else 1
    return [namespace, name, f"{name}-predictor", revision_name(name, number)]


def _samples(metric: Any, suffix: str) -> Iterator[Any]:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                yield sample


def _gauge(gauge: Any, key: tuple[str, str]) -> float:
    for sample in _samples(gauge, ""):
        if (sample.labels.get("namespace"), sample.labels.get("name")) == key:
            return float(sample.value)
    return 0.0
