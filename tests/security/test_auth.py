"""Token auth as an attacker probes it: raw paths that climb out of an open prefix, host routing,
every API family; a real ``kfbox up --token`` on loopback, requests as raw bytes on a socket so no
client normalises the path first."""

from __future__ import annotations

import httpx
import pytest

from tests.security.conftest import TOKEN
from tests.security.raw_http import raw_request
from tests.support import ServerProcess

GATEWAY_HOST = "iris.default.example.com"

# every API family, as a user or client reaches it
PROTECTED = [
    "/apis/v2beta1/experiments",
    "/pipeline/apis/v2beta1/runs",
    "/apis/v2beta1/pipelines",
    "/api/model_registry/v1alpha3/registered_models",
    "/api/model_registry/v1/registered_models",
    "/apis/serving.kserve.io/v1beta1/inferenceservices",
    "/apis/serving.knative.dev/v1/services",  # KServe's Knative Services, read-only
    "/apis/apps/v1/deployments",  # KServe's Standard-mode Deployments and HPAs, read-only
    "/apis/apps/v1/namespaces/default/replicasets",  # and their ReplicaSets
    "/apis/autoscaling/v2/horizontalpodautoscalers",
    "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
    "/api",  # Kubernetes discovery (kubectl)
    "/apis",
    "/openapi/v2",
    "/serving/default/iris/v1/models/iris",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/",
]


@pytest.fixture(scope="module")
def server(token_server: ServerProcess) -> ServerProcess:
    return token_server


@pytest.mark.parametrize(("method", "target", "host"), [
    ("POST", "/static/../v1/models/iris:predict", GATEWAY_HOST),
    ("POST", "/static/%2e%2e/v1/models/iris:predict", GATEWAY_HOST),
    ("POST", "/static/%2E%2E/v1/models/iris:predict", GATEWAY_HOST),
    ("POST", "/static/%252e%252e/v1/models/iris:predict", GATEWAY_HOST),
    ("GET", "/static/../v2/models/iris", GATEWAY_HOST),
    ("GET", "/static/./../v2/models/iris", GATEWAY_HOST),
    ("POST", "/static/..%2fv1/models/iris:predict", GATEWAY_HOST),
    ("GET", "/static/../api/model_registry/v1alpha3/registered_models", None),
    ("GET", "/static/%2e%2e/metrics", None),
    ("GET", "/healthz/../metrics", None),
    ("POST", "/v1/models/iris:predict", GATEWAY_HOST),  # host routing is never open
    ("GET", "/static/x", GATEWAY_HOST),
])
def test_no_path_climbs_out_of_an_open_route(server: ServerProcess, method: str, target: str,
                                            host: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if host:
        headers["Host"] = f"{host}:{server.port}"
    reply = raw_request(server.port, method, target, headers, b'{"instances": [[1, 2, 3, 4]]}')
    # before the fix the gateway answered (its KServe-style 404 for a missing service, or a
    # prediction for a deployed one) and the registry listed its models
    assert reply.status in (400, 401), (reply.status, reply.body)
    assert b"registered_models" not in reply.body.lower() or reply.status == 400
    assert b"InferenceService" not in reply.body


@pytest.mark.parametrize("path", PROTECTED)
def test_every_api_family_needs_the_token(server: ServerProcess, path: str) -> None:
    denied = httpx.get(server.url + path)
    assert denied.status_code == 401, (path, denied.status_code, denied.text[:200])
    assert denied.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(server.url + path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    allowed = httpx.get(server.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    # with the token each is a real route: 200, or the gateway's 404 naming the missing service
    assert allowed.status_code == (404 if path.startswith("/serving/") else 200), path


def test_gateway_by_host_needs_the_token(server: ServerProcess) -> None:
    headers = {"Host": f"{GATEWAY_HOST}:{server.port}"}
    denied = httpx.post(f"{server.url}/v1/models/iris:predict", headers=headers, json={"instances": []})
    assert denied.status_code == 401
    allowed = httpx.post(f"{server.url}/v1/models/iris:predict", json={"instances": []},
                         headers={**headers, "Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 404 and "iris" in allowed.json()["error"]  # reached the gateway


def test_liveness_and_login_page_stay_open(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/login").status_code == 200


def test_a_browser_without_credentials_is_sent_to_login(server: ServerProcess) -> None:
    reply = httpx.get(f"{server.url}/apis/v2beta1/runs?page_size=5", headers={"Accept": "text/html"})
    assert reply.status_code == 303
    assert reply.headers["location"] == "/login?next=%2Fapis%2Fv2beta1%2Fruns%3Fpage_size%3D5"


def test_a_browser_on_a_model_host_gets_401_not_a_redirect_loop(server: ServerProcess) -> None:
    reply = httpx.get(f"{server.url}/v1/models/iris", headers={"Accept": "text/html",
                                                               "Host": f"{GATEWAY_HOST}:{server.port}"})
    assert reply.status_code == 401


def test_dot_segments_are_refused_even_when_authorised(server: ServerProcess) -> None:
    reply = raw_request(server.port, "GET", "/apis/v2beta1/../v2beta1/experiments",
                        {"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 400
    assert "'..'" in reply.json()["message"]


@pytest.mark.parametrize("target", ["/.well-known/security.txt", "/api/model_registry/v1alpha3/registered_models/a..b",
                                    "/static/.hidden", "/x%25y"])
def test_dots_inside_names_are_not_dot_segments(server: ServerProcess, target: str) -> None:
    """Only whole '.'/'..' segments are refused; names with dots go on to auth (401 here)."""
    assert raw_request(server.port, "GET", target).status in (401, 404), target
