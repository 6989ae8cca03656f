"""``GET /metrics`` skips the middleware stack and routing, but never the Host check or the token.

A real ``kfbox up`` bound off loopback (0.0.0.0, so it must have a token), scraped by its own real
Prometheus (the token from its credentials file) and as an intruder would: raw requests on a socket,
so no client rewrites the Host or the path.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.security.raw_http import raw_request
from tests.serving.helpers import wait_for
from tests.support import ServerProcess, loopback

TOKEN = "scrape-s3cret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess.start(tmp_path_factory.mktemp("home"), token=TOKEN, host="0.0.0.0",
                               extra_env={"KFBOX_PROMETHEUS_SCRAPE_INTERVAL": "1s"})
    yield proc
    proc.stop()


def scrape(server: ServerProcess, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.port}/metrics", headers=headers, timeout=30)


def test_a_scrape_without_the_token_is_refused(server: ServerProcess) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        reply = scrape(server, headers)
        assert reply.status_code == 401, (headers, reply.text)
        assert reply.headers["www-authenticate"] == "Bearer"
        assert "kfbox_http_requests" not in reply.text
    # a browser without a session is sent to log in, as on every other page
    browser = scrape(server, {"Accept": "text/html"})
    assert browser.status_code == 303 and browser.headers["location"] == "/login?next=%2Fmetrics"


def test_a_scrape_with_the_token_or_a_session_is_served_and_counted(server: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    scrape(server)  # refused: counted as unmatched, like any refused request
    first = scrape(server, auth)
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
    assert int(first.headers["content-length"]) == len(first.content)
    names = {family.name for family in text_string_to_metric_families(first.text)}
    assert {"kfbox_http_requests", "process_cpu_seconds", "kfbox_pipeline_runs"} <= names
    text = scrape(server, auth).text
    assert 'kfbox_http_requests_total{method="GET",route="/metrics",status="200"}' in text
    assert 'route="unmatched",status="401"' in text
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as browser:
        assert browser.post("/login", data={"token": TOKEN, "next": "/metrics"}).status_code == 303
        assert "kfbox_http_requests_total" in browser.get("/metrics").text


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example:80"])
def test_a_scrape_by_a_name_the_server_is_not_known_by_is_refused(server: ServerProcess, host: str) -> None:
    reply = raw_request(server.port, "GET", "/metrics", {"Host": host, "Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 400, reply.body
    assert "--allowed-host" in reply.json()["message"]


@pytest.mark.parametrize("target", ["/static/../metrics", "/static/%2e%2e/metrics", "/metrics/", "//metrics"])
def test_other_spellings_of_the_path_are_not_an_open_door(server: ServerProcess, target: str) -> None:
    reply = raw_request(server.port, "GET", target)
    assert reply.status in (400, 401, 404), (target, reply.status)
    assert b"kfbox_http_requests" not in reply.body


def test_a_model_hosts_metrics_path_goes_to_the_gateway(server: ServerProcess) -> None:
    reply = raw_request(server.port, "GET", "/metrics", {"Host": f"iris.default.example.com:{server.port}",
                                                         "Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 404, reply.body  # the gateway's: no such InferenceService, not the server's series
    assert b"InferenceService default/iris does not exist" in reply.body
    assert b"kfbox_http_requests" not in reply.body


def test_only_get_is_served(server: ServerProcess) -> None:
    reply = httpx.post(f"http://127.0.0.1:{server.port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code in (404, 405)
    assert "kfbox_http_requests" not in reply.text


def test_prometheus_scrapes_the_token_server_with_its_credentials_file(server: ServerProcess) -> None:
    with server.client() as client:
        assert client.get("/monitoring/prometheus").json()["running"] is False  # off until asked
        status = client.post("/monitoring/prometheus", json={"action": "start"}).json()
        try:
            url = status["url"]

            def up() -> list[dict[str, object]]:
                try:  # start does not wait for Prometheus to be ready
                    reply = loopback().get(f"{url}/api/v1/query", params={"query": 'up{job="kfbox"} == 1'}, timeout=10)
                except httpx.TransportError:
                    return []
                if reply.status_code == 503:  # listening, not ready yet
                    return []
                return reply.json()["data"]["result"]  # type: ignore[no-any-return]

            found = wait_for(up, 30, "the server scraped through its token")
            assert found[0]["metric"]["component"] == "server"  # the label from service discovery (token too)
            targets = httpx.get(f"{url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
            server_target = next(t for t in targets if t["labels"]["job"] == "kfbox")
            assert server_target["health"] == "up" and server_target["lastError"] == ""
        finally:
            client.post("/monitoring/prometheus", json={"action": "stop"})
