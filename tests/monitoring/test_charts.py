"""Live chart data: one JSON shape from Prometheus or from kfbox's bounded in-memory history."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from kfbox.monitoring.history import FIELDS, History, quantile
from tests.monitoring.conftest import SERVICES, Monitored, monitoring_cli
from tests.serving.helpers import wait_for


def _series(monitored: Monitored, name: str) -> dict[str, Any]:
    with monitored.server.client() as client:
        reply = client.get(f"/monitoring/series/default/{name}", params={"minutes": 5})
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def _last(values: list[float | None]) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)


def _check_live(body: dict[str, Any]) -> None:
    assert set(body) == {"source", "step", "t", *FIELDS}
    assert all(len(body[f]) == len(body["t"]) for f in FIELDS)
    assert (_last(body["rps"]) or 0) > 1  # the fixture's steady traffic: ~5 req/s per service
    assert 0 < (_last(body["p99"]) or 0) < 30_000  # milliseconds
    assert 0.5 < (_last(body["success"]) or 0) <= 1
    assert _last(body["ready"]) == 1 and _last(body["desired"]) == 1


def test_series_from_prometheus_then_from_memory(monitored: Monitored) -> None:
    body = wait_for(lambda: (b := _series(monitored, SERVICES[0]))["source"] == "prometheus"
                    and (_last(b["rps"]) or 0) > 1 and b, 60, "prometheus chart data")
    _check_live(body)
    with monitored.server.client() as client:
        assert client.post("/monitoring/prometheus", json={"action": "stop"}).json()["running"] is False
        try:
            memory = _series(monitored, SERVICES[1])
            assert memory["source"] == "memory" and memory["step"] == 1
            _check_live(memory)
        finally:
            monitoring_cli(monitored.server, "up")  # returns once Prometheus is ready: the next module queries it
            monitored.prometheus = client.get("/monitoring/prometheus").json()["url"]


def test_pipeline_runs_over_time(monitored: Monitored) -> None:
    with monitored.server.client() as client:
        body = wait_for(lambda: (b := client.get("/monitoring/series/pipelines", params={"minutes": 5}).json())
                        and (_last(b["failed"]) or 0) >= 1 and b, 30, "the FAILED run on the pipelines chart")
    assert set(body) == {"source", "step", "t", "pending", "running", "succeeded", "failed"}
    assert all(len(body[f]) == len(body["t"]) for f in ("pending", "running", "succeeded", "failed"))


def test_series_of_an_unknown_service_is_a_404(monitored: Monitored) -> None:
    with monitored.server.client() as client:
        reply = client.get("/monitoring/series/default/nope")
    assert reply.status_code == 404 and "kfbox serve list" in reply.text


def test_history_memory_is_fixed_by_construction() -> None:
    history = History(interval=5.0, horizon=3600.0, max_services=200)
    pools = {1: SimpleNamespace(replicas=[], inflight=0, desired=1)}
    deployments = {("default", f"s{i}"): SimpleNamespace(pools=pools) for i in range(250)}
    idle = SimpleNamespace(collect=lambda: [])
    serving = SimpleNamespace(deployments=deployments, metrics=SimpleNamespace(requests=idle, latency=idle))
    for tick in range(800):  # more samples than slots: the ring wraps, nothing grows
        history.sample(serving, float(tick * 5))
    assert len(history.rings) == 200
    assert history.bytes_used() == 720 * 8 + 200 * len(FIELDS) * 720 * 8 == 9_221_760
    assert len(history.series(("default", "s0"))["t"]) == 720


@pytest.mark.parametrize(("q", "want"), [(0.25, 0.0075), (0.5, 0.01), (0.99, 0.0492), (1.0, 0.05)])
def test_quantile_interpolates_like_prometheus(q: float, want: float) -> None:
    buckets = [(0.005, 0.0), (0.01, 50.0), (0.05, 100.0), (math.inf, 100.0)]
    assert quantile(q, buckets) == pytest.approx(want)
