"""Serving a Model Registry version: ``model-registry://`` manifests and ``kfbox deploy``, with the
upstream ``model_registry`` client registering the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.helpers import (
    API,
    ROWS,
    apply,
    expected,
    kfbox,
    manifest,
    ready,
    status,
    train_iris,
    wait_for,
    wait_ready,
)
from tests.support import ServerProcess, upstream_registry

pytestmark = pytest.mark.filterwarnings("ignore:User access token is missing")
MR = "/api/model_registry/v1alpha3"


@pytest.fixture(scope="module")
def iris(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder: Path = tmp_path_factory.mktemp("trained") / "iris"
    model = train_iris(folder)
    registry = upstream_registry(server.port, author="tester")
    registry.register_model("iris", f"file://{folder}", model_format_name="sklearn", model_format_version="1",
                            version="v1")
    return model


@pytest.fixture()
def client(server: ServerProcess) -> Any:
    with server.client() as c:
        yield c


def test_manifest_with_model_registry_uri(client: httpx.Client, iris: Any) -> None:
    apply(client, manifest("iris-mr", "model-registry://iris/v1"))
    wait_ready(client, "iris-mr")
    by_path = client.post("/serving/default/iris-mr/v1/models/iris-mr:predict", json={"instances": ROWS})
    assert by_path.json() == {"predictions": expected(iris)}
    v2 = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": [v for r in ROWS for v in r]}]}
    by_host = client.post("/v2/models/iris-mr/infer", json=v2, headers={"Host": "iris-mr.default.example.com"})
    assert by_host.json()["outputs"][0]["data"] == expected(iris)


def test_unknown_registry_version_is_not_ready(client: httpx.Client, iris: Any) -> None:
    apply(client, manifest("iris-v9", "model-registry://iris/v9"))
    st = wait_for(lambda: (s := status(client, "iris-v9"))["modelStatus"]["states"]["activeModelState"]
                  == "FailedToLoad" and s, 30, "iris-v9 to fail")
    assert ready(st)["status"] == "False"
    assert "v9" in ready(st)["message"]
    assert client.delete(API.format(ns="default") + "/iris-v9").status_code == 200


def test_kfbox_deploy_serves_and_records_in_the_registry(client: httpx.Client, server: ServerProcess,
                                                        iris: Any) -> None:
    deployed = kfbox("deploy", "iris", "--version", "v1", "--name", "iris-prod", "-o", "json", url=server.url)
    assert deployed.returncode == 0, deployed.stderr
    body = json.loads(deployed.stdout)
    assert body["spec"]["predictor"]["model"]["storageUri"] == "model-registry://iris/v1"
    predicted = kfbox("predict", "iris-prod", "--data", json.dumps(ROWS), url=server.url)
    assert json.loads(predicted.stdout) == {"predictions": expected(iris)}
    services = client.get(f"{MR}/inference_services").json()["items"]
    recorded = next(s for s in services if s["name"] == "iris-prod")
    assert recorded["desiredState"] == "DEPLOYED"
    assert recorded["modelVersionId"] == body["registry"]["inferenceService"]["modelVersionId"]
    serves = client.get(f"{MR}/inference_services/{recorded['id']}/serves").json()["items"]
    assert [s["modelVersionId"] for s in serves] == [recorded["modelVersionId"]]
    assert kfbox("serve", "delete", "iris-prod", url=server.url).returncode == 0
    undeployed = client.get(f"{MR}/inference_services/{recorded['id']}").json()
    assert undeployed["desiredState"] == "UNDEPLOYED"


def test_deploy_of_an_unknown_version_fails_and_changes_nothing(client: httpx.Client, server: ServerProcess,
                                                               iris: Any) -> None:
    before = [i["metadata"]["name"] for i in client.get(API.format(ns="default")).json()["items"]]
    failed = kfbox("deploy", "iris", "--version", "v7", "--name", "iris-v7", url=server.url)
    assert failed.returncode == 1
    assert "v7" in failed.stderr
    assert [i["metadata"]["name"] for i in client.get(API.format(ns="default")).json()["items"]] == before
    services = client.get(f"{MR}/inference_services").json()["items"]
    assert "iris-v7" not in [s["name"] for s in services]
