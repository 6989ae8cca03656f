"""Cross-site requests a browser can be made to send, and DNS rebinding, against a real loopback
``kfbox up`` with no token (the default: exactly where a hostile web page is the threat)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.security.raw_http import raw_request
from tests.support import ServerProcess

EVIL = "http://evil.example"
REGISTRY = "/api/model_registry/v1alpha3/registered_models"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess.start(tmp_path_factory.mktemp("home"),
                               extra_env={"KFBOX_ALLOWED_HOSTS": "kfbox.corp, *.lab.example"})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from kfp import compiler, dsl

    # no annotations: under `from __future__ import annotations` kfp would see strings
    @dsl.component(base_image="python:3.11")
    def hello():  # type: ignore[no-untyped-def]
        print("hi")

    @dsl.pipeline(name="csrf-probe")
    def probe():  # type: ignore[no-untyped-def]
        hello()

    path: Path = tmp_path_factory.mktemp("pkg") / "probe.yaml"
    compiler.Compiler().compile(probe, str(path))
    return path.read_bytes()


def _experiment(http: httpx.Client, name: str) -> str:
    reply = http.post("/apis/v2beta1/experiments", json={"display_name": name})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["experiment_id"])


def _state(http: httpx.Client, experiment_id: str) -> str:
    return str(http.get(f"/apis/v2beta1/experiments/{experiment_id}").json()["storage_state"])


FORGED = [  # what a page on another site can send without a CORS preflight
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"a=b"),
    ({"Content-Type": "multipart/form-data; boundary=x"},
     b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--x--\r\n"),
    ({"Content-Type": "text/plain"}, b'{"display_name": "x"}'),
]


@pytest.mark.parametrize(("headers", "body"), FORGED)
@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:1", "http://localhost.evil.example"])
def test_cross_origin_post_cannot_archive_an_experiment(server: ServerProcess, headers: dict[str, str],
                                                       body: bytes, origin: str) -> None:
    with server.client() as http:
        experiment_id = _experiment(http, f"victim-{origin}-{headers['Content-Type'][:9]}")
        reply = http.post(f"/apis/v2beta1/experiments/{experiment_id}:archive", content=body,
                          headers={**headers, "Origin": origin})
        assert reply.status_code == 403, reply.text
        assert origin in reply.json()["message"] and "Origin" in reply.json()["message"]
        assert "access-control-allow-origin" not in reply.headers
        assert _state(http, experiment_id) == "AVAILABLE"


def test_cross_site_fetch_metadata_without_origin_is_refused(server: ServerProcess) -> None:
    with server.client() as http:
        experiment_id = _experiment(http, "victim-fetch-site")
        reply = http.post(f"/apis/v2beta1/experiments/{experiment_id}:archive",
                          headers={"Sec-Fetch-Site": "cross-site"})
        assert reply.status_code == 403
        assert _state(http, experiment_id) == "AVAILABLE"


def test_same_origin_and_originless_clients_still_change_things(server: ServerProcess) -> None:
    with server.client() as http:
        experiment_id = _experiment(http, "own")
        own = http.post(f"/apis/v2beta1/experiments/{experiment_id}:archive",
                        headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"})
        assert own.status_code == 200, own.text
        assert _state(http, experiment_id) == "ARCHIVED"
        assert http.post(f"/apis/v2beta1/experiments/{experiment_id}:unarchive").status_code == 200  # SDK: no Origin
        assert _state(http, experiment_id) == "AVAILABLE"
        # a page of this server reached as localhost is its own origin too
        local = http.post(f"/apis/v2beta1/experiments/{experiment_id}:archive",
                          headers={"Origin": f"http://localhost:{server.port}", "Host": f"localhost:{server.port}"})
        assert local.status_code == 200


def test_cross_origin_upload_stores_no_pipeline(server: ServerProcess, package: bytes) -> None:
    with server.client() as http:
        def names() -> list[str]:
            return [p["display_name"] for p in http.get("/apis/v2beta1/pipelines").json().get("pipelines", [])]

        files = {"uploadfile": ("probe.yaml", package, "application/x-yaml")}
        forged = http.post("/apis/v2beta1/pipelines/upload", params={"name": "forged"}, files=files,
                           headers={"Origin": EVIL})
        assert forged.status_code == 403
        assert "forged" not in names()
        own = http.post("/apis/v2beta1/pipelines/upload", params={"name": "own"}, files=files,
                        headers={"Origin": server.url})
        assert own.status_code == 200, own.text
        assert "own" in names()


@pytest.mark.parametrize("method", ["GET", "OPTIONS", "POST"])
def test_no_foreign_origin_gets_cors_headers(server: ServerProcess, method: str) -> None:
    reply = httpx.request(method, server.url + REGISTRY, headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert not any(k.lower().startswith("access-control-allow") for k in reply.headers), reply.headers


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "evil.example.", "localhost.evil.example",
                                  "127.0.0.1.evil.example", "example.com", "kfbox"])
def test_dns_rebinding_host_is_refused_before_any_data(server: ServerProcess, host: str) -> None:
    read = raw_request(server.port, "GET", REGISTRY, {"Host": host})
    assert read.status == 400, read.body
    assert "--allowed-host" in read.json()["message"]
    assert b"items" not in read.body
    write = raw_request(server.port, "POST", REGISTRY, {"Host": host, "Content-Type": "application/json"},
                        b'{"name": "rebound"}')
    assert write.status == 400
    with server.client() as http:
        models = http.get(REGISTRY).json().get("items", [])
        metrics = http.get("/metrics").text
    assert "rebound" not in [m["name"] for m in models]
    assert 'route="unmatched",status="400"' in metrics  # refused requests are counted, not hidden


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}",
                                  "10.1.2.3:{port}"])
def test_names_the_server_is_known_by_are_served(server: ServerProcess, host: str) -> None:
    reply = raw_request(server.port, "GET", "/healthz", {"Host": host.format(port=server.port)})
    assert reply.status == 200, reply.body


def test_ingress_names_reach_the_gateway(server: ServerProcess) -> None:
    reply = raw_request(server.port, "GET", "/v1/models/iris", {"Host": "iris.default.example.com"})
    assert reply.status == 404 and "default/iris" in reply.json()["error"]  # the gateway's own answer


@pytest.mark.parametrize(("host", "status"), [("kfbox.corp", 200), ("KFBOX.corp:8080", 200),
                                            ("gpu1.lab.example", 200), ("lab.example.evil", 400)])
def test_allowed_hosts_setting_adds_names(server: ServerProcess, host: str, status: int) -> None:
    assert raw_request(server.port, "GET", REGISTRY, {"Host": host}).status == status
