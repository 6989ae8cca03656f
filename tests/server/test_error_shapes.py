"""In-process tier: every API family answers a bad request with its own upstream error shape
(KFP's google.rpc Status, the Model Registry's {code, message}, Kubernetes' Status) and a message
that names the problem — the whole app over ASGI, no server process. The same paths over a real
``kfbox up`` are covered by the subsystems' own real-server tests."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

REGISTRY = "/api/model_registry/v1alpha3"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"

pytestmark = pytest.mark.inprocess


CASES = [
    # (method, path, request kwargs, status, shape, words in the message)
    ("get", "/nosuch", {}, 404, "platform", "No API at GET /nosuch"),
    ("post", "/apis/v2beta1/runs", {"content": b"{bad"}, 400, "kfp", "The request body is not valid JSON"),
    ("post", "/apis/v2beta1/runs", {"content": b"[1]"}, 400, "kfp", "must be a JSON object"),
    ("post", "/apis/v2beta1/runs", {"json": {"display_name": 3}}, 400, "kfp", "display_name: Input should be a valid"),
    ("get", "/apis/v2beta1/runs/nosuch", {}, 404, "kfp", "'nosuch' does not exist"),
    ("get", "/apis/v2beta1/pipelines?page_size=-1", {}, 400, "kfp", "page_size -1 is out of range"),
    ("post", f"{REGISTRY}/registered_models", {"json": {"nam": "x"}}, 400, "registry", 'unknown field "nam"'),
    ("post", f"{REGISTRY}/registered_models", {"content": b"[", "headers": {"content-type": "application/json"}},
     400, "registry", "not valid JSON"),
    ("get", f"{REGISTRY}/registered_models/999999", {}, 404, "registry", "Registered model with id 999999 not found"),
    # any id the id column can hold is a lookup, as upstream's (its fuzz tests post to random ten-digit ids)
    ("post", f"{REGISTRY}/model_versions/2000000000/artifacts",
     {"json": {"artifactType": "model-artifact", "name": "a", "uri": "s3://b/m"}}, 404, "registry",
     "Model version with id 2000000000 not found"),
    ("get", f"{REGISTRY}/registered_models/2147483648", {}, 400, "registry", "is not a valid id"),
    ("post", ISVC, {"json": {"kind": "InferenceService"}}, 400, "kube", "API version"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "shape", "words"), CASES,
                         ids=[f"{c[0]} {c[1]} {c[3]}" for c in CASES])
def test_bad_requests_get_each_apis_error_shape(app_client: TestClient, method: str, path: str,
                                                kwargs: dict[str, Any], status: int, shape: str, words: str) -> None:
    response = getattr(app_client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    if shape == "kfp":  # google.rpc.Status as the KFP API server writes it
        assert body["code"] == {400: 3, 404: 5}[status] and body["error"] == body["message"]
        assert body["details"] == []
    elif shape == "registry":
        assert body["code"] == {400: "Bad Request", 404: "Not Found"}[status]
    elif shape == "kube":
        assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == status
        assert body["reason"] == "BadRequest"
    else:
        assert body["code"] == str(status)
    assert words in body["message"]


def test_healthz_answers_in_process(app_client: TestClient) -> None:
    assert app_client.get("/healthz").json()["status"] == "ok"
