"""The platform server as a user meets it: health, metrics, the index page, auth, limits."""

from __future__ import annotations

import signal

import httpx

from tests.support import ServerProcess


def test_healthz_metrics_and_index(server: ServerProcess) -> None:
    with server.client() as http:
        assert http.get("/healthz").json()["status"] == "ok"
        index = http.get("/")
        assert index.status_code == 200
        assert all(f'href="{page}"' in index.text for page in ("/runs", "/models", "/deployments"))
        metrics = http.get("/metrics").text
    assert 'kfbox_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics
    assert "kfbox_http_request_duration_seconds_bucket" in metrics


def test_unknown_path_is_a_json_404(server: ServerProcess) -> None:
    reply = httpx.get(f"{server.url}/no/such/thing")
    assert reply.status_code == 404
    assert "/no/such/thing" in reply.json()["message"]


def test_body_over_limit_is_413(server: ServerProcess) -> None:
    reply = httpx.post(f"{server.url}/api/model_registry/v1alpha3/registered_models",
                       content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                       headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert "limit" in reply.json()["message"]


def test_token_required_when_set(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = ServerProcess.start(tmp_path / "home", token="s3cret")
    try:
        assert httpx.get(f"{proc.url}/healthz").status_code == 200  # liveness stays open
        denied = httpx.get(f"{proc.url}/metrics")
        assert denied.status_code == 401
        assert "bearer" in denied.json()["message"].lower()
        wrong = httpx.get(f"{proc.url}/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = httpx.get(f"{proc.url}/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    finally:
        proc.stop()


def test_sigterm_stops_cleanly_and_removes_record(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = ServerProcess.start(tmp_path / "home")
    assert (proc.home / "server.json").exists()
    # uvicorn finishes in-flight requests, runs shutdown hooks, then re-raises SIGTERM
    assert proc.stop() in (0, -signal.SIGTERM)
    assert not (proc.home / "server.json").exists()
