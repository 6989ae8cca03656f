"""``/metrics`` through kfbox's cached writer: the same bytes as prometheus_client's ``generate_latest``."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary, generate_latest
from prometheus_client.core import GaugeMetricFamily, UnknownMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from kfbox.server.exposition import MAX_CACHED, Exposition


class _Custom(Collector):
    """Untyped and timestamped series, as the Knative view and others export them."""

    def __init__(self) -> None:
        self.value = 1.0

    def collect(self):  # type: ignore[no-untyped-def]
        untyped = UnknownMetricFamily("revision_app_request_count", "Requests.", labels=["code"])
        untyped.add_metric(["200"], self.value)
        yield untyped
        gauge = GaugeMetricFamily("stamped", "With a timestamp.", labels=["x"])
        gauge.add_metric(["a"], 2.5, timestamp=1700000000.123)
        yield gauge


def _registry() -> tuple[CollectorRegistry, Counter, Histogram, _Custom]:
    registry = CollectorRegistry()
    counter = Counter("requests", "Requests\nby code \\ path.", ["code", "path"], registry=registry)
    histogram = Histogram("latency_seconds", "Latency.", ["name"], registry=registry)
    gauge = Gauge("big", "Large and special values.", ["kind"], registry=registry)
    Summary("sizes", "Sizes.", registry=registry).observe(3)
    Info("build", "Build.", registry=registry).info({"version": "1.0"})
    Enum("phase", "Phase.", states=["a", "b"], registry=registry).state("b")
    custom = _Custom()
    registry.register(custom)
    counter.labels("200", 'we"ird\\path\nnext').inc()
    counter.labels("500", "/ünïcode").inc(3)
    for value in (0.001, 0.3, 7.0, 100.0):
        histogram.labels("iris").observe(value)
    for kind, value in (("million", 1234567.0), ("tiny", 1e-9), ("inf", float("inf")), ("nan", float("nan")),
                        ("neg", -42.0), ("int", 7)):
        gauge.labels(kind).set(value)
    return registry, counter, histogram, custom


def test_same_bytes_as_generate_latest_across_changing_values() -> None:
    registry, counter, histogram, custom = _registry()
    writer = Exposition(registry)
    for round_ in range(3):  # cached prefixes, fresh values every scrape
        assert writer.generate() == generate_latest(registry)
        counter.labels("200", "/new").inc(round_)
        histogram.labels(f"svc-{round_}").observe(0.5)
        custom.value += 10
        time.sleep(0.01)
    assert 'revision_app_request_count{code="200"} 31.0' in writer.generate().decode()


def test_label_churn_past_the_cap_starts_the_cache_over() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("per_pid", "One series per pid.", ["pid"], registry=registry)
    writer = Exposition(registry)
    for pid in range(MAX_CACHED + 10):
        gauge.labels(str(pid)).set(pid)
    writer.generate()
    gauge.clear()
    gauge.labels("1").set(1)
    assert writer.generate() == generate_latest(registry)
    assert len(writer._prefixes) < 10


def test_server_metrics_parse(app_client: TestClient) -> None:
    app_client.get("/healthz")
    reply = app_client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(reply.text)}
    assert {"kfbox_http_requests", "process_cpu_seconds"} <= names
