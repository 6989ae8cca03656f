"""Serving's Prometheus metrics, labelled by InferenceService (``namespace``, ``name``)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COLD_START_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["namespace", "name"]
        self.requests = Counter("kfbox_serving_requests", "Inference requests through the gateway, by status code.",
                                [*labels, "code"], registry=registry)
        self.latency = Histogram("kfbox_serving_request_duration_seconds", "Gateway latency of inference requests.",
                                 labels, buckets=LATENCY_BUCKETS, registry=registry)
        self.inflight = Gauge("kfbox_serving_inflight_requests", "Inference requests in flight.", labels,
                              registry=registry)
        self.replicas = Gauge("kfbox_serving_replicas", "Ready model replicas per InferenceService.", labels,
                              registry=registry)
        self.desired = Gauge("kfbox_serving_desired_replicas", "Replicas the autoscaler wants.", labels,
                             registry=registry)
        self.cold_starts = Counter("kfbox_serving_cold_starts", "Requests that waited for a replica to start "
                                   "(scale from zero).", labels, registry=registry)
        self.replica_start_seconds = Histogram("kfbox_serving_replica_start_seconds", "From spawning a model "
                                               "replica to its first ready probe.", labels,
                                               buckets=COLD_START_BUCKETS, registry=registry)
        self.cold_start_seconds = Histogram("kfbox_serving_cold_start_seconds", "How long a request waited for a "
                                            "cold start.", labels, buckets=COLD_START_BUCKETS, registry=registry)

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted InferenceService's series (the request counter keeps its history)."""
        for gauge in (self.inflight, self.replicas, self.desired):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)
