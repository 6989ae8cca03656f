"""The upstream ``model_registry`` client, used exactly as a data scientist would, against ``kfbox up``."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support import ServerProcess, create_database, drop_database, upstream_registry

if TYPE_CHECKING:  # model_registry is imported where used: every pytest worker imports this module
    from model_registry import ModelRegistry

warnings.filterwarnings("ignore", message="User access token is missing")


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mysql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The same client tests on each metadata backend (skipped, with the reason, where one is absent)."""
    name = f"kfbox_test_{uuid.uuid4().hex[:12]}"
    url = None if request.param == "sqlite" else create_database(request.param, name)
    proc = ServerProcess.start(tmp_path_factory.mktemp("home"), db=url)
    yield proc
    proc.stop()
    if url is not None:
        drop_database(request.param, name)


@pytest.fixture(scope="module")
def registry(server: ServerProcess) -> Iterator[ModelRegistry]:
    yield upstream_registry(server.port, author="alice")


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    """The raw API's calls on one client: ``httpx.get`` builds a client and its TLS context (~50 ms of CPU) per call."""
    with server.client() as client:
        yield client


def register(registry: ModelRegistry, name: str, version: str, **metadata: object) -> None:
    registry.register_model(name, f"s3://models/{name}/{version}", model_format_name="sklearn",
                            model_format_version="1", version=version, version_description=f"{name} {version}",
                            metadata=metadata or None)


def test_register_read_archive_and_refuse_duplicates(registry: ModelRegistry) -> None:
    from model_registry.exceptions import StoreError
    from model_registry.types import ModelVersionState, RegisteredModelState

    register(registry, "iris", "v1", accuracy=0.97, epochs=5, framework="sklearn", tuned=True)
    register(registry, "iris", "v2", accuracy=0.98)
    register(registry, "wine", "v1", accuracy=0.91)

    version = registry.get_model_version("iris", "v1")
    assert version is not None
    assert version.custom_properties == {"accuracy": 0.97, "epochs": 5, "framework": "sklearn", "tuned": True}
    assert version.author == "alice" and version.description == "iris v1"
    artifact = registry.get_model_artifact("iris", "v1")
    assert artifact is not None and artifact.uri == "s3://models/iris/v1"
    assert artifact.model_format_name == "sklearn"
    assert registry.get_model_artifact("iris", "v2").uri == "s3://models/iris/v2"  # type: ignore[union-attr]
    assert {m.name for m in registry.get_registered_models()} >= {"iris", "wine"}
    assert [v.name for v in registry.get_model_versions("iris")] == ["v1", "v2"]

    version.state = ModelVersionState.ARCHIVED
    registry.update(version)
    assert registry.get_model_version("iris", "v1").state == ModelVersionState.ARCHIVED  # type: ignore[union-attr]
    assert registry.get_model_version("iris", "v1").custom_properties["accuracy"] == 0.97  # type: ignore[union-attr]
    model = registry.get_registered_model("wine")
    assert model is not None
    model.state = RegisteredModelState.ARCHIVED
    model.description = "retired"
    registry.update(model)
    again = registry.get_registered_model("wine")
    assert again is not None and again.state == RegisteredModelState.ARCHIVED and again.description == "retired"

    with pytest.raises(StoreError, match="already exists"):
        register(registry, "iris", "v2")
    assert [v.name for v in registry.get_model_versions("iris")] == ["v1", "v2"]
    assert registry.get_model_version("iris", "v9") is None
    assert registry.get_registered_model("no-such-model") is None


def test_pagination_across_pages(registry: ModelRegistry, server: ServerProcess, http: httpx.Client) -> None:
    base = f"{server.url}/api/model_registry/v1"
    register(registry, "paged", "v0")
    model_id = http.get(f"{base}/registered_model", params={"name": "paged"}).json()["id"]
    for i in range(1, 7):  # the raw API is quicker than the client, which loads CA certificates per call
        reply = http.post(f"{base}/model_versions", json={"name": f"v{i}", "registeredModelId": model_id})
        assert reply.status_code == 201
    names = [v.name for v in registry.get_model_versions("paged").page_size(2)]
    assert names == [f"v{i}" for i in range(7)]
    newest_first = [v.name for v in registry.get_model_versions("paged").page_size(3).order_by_creation_time()
                    .descending()]
    assert newest_first == [f"v{i}" for i in reversed(range(7))]
    models = [m.name for m in registry.get_registered_models().page_size(1)]
    assert len(models) == len(set(models)) and "paged" in models

    # the raw protocol: a token per page, "" on the last, an empty token restarts
    base = f"{base}/model_versions"
    seen: list[str] = []
    token = ""
    for _ in range(20):
        page = http.get(base, params={"pageSize": "4", "orderBy": "ID", "sortOrder": "ASC",
                                       "nextPageToken": token}).json()
        assert page["size"] == len(page["items"]) and page["pageSize"] == 4
        seen += [item["id"] for item in page["items"]]
        token = page["nextPageToken"]
        if token == "":
            break
    assert seen == sorted(seen, key=int) and len(seen) == len(set(seen)) >= 10


def test_wire_format_matches_the_spec(server: ServerProcess, registry: ModelRegistry, http: httpx.Client) -> None:
    register(registry, "wire", "v1", accuracy=0.5)
    base = f"{server.url}/api/model_registry/v1"
    model = http.get(f"{base}/registered_model", params={"name": "wire"}).json()
    assert model["id"].isdigit() and model["createTimeSinceEpoch"].isdigit() and model["state"] == "LIVE"
    versions = http.get(f"{base}/registered_models/{model['id']}/versions").json()
    version = versions["items"][0]
    assert version["registeredModelId"] == model["id"]
    assert version["customProperties"]["accuracy"] == {"double_value": 0.5, "metadataType": "MetadataDoubleValue"}
    artifacts = http.get(f"{base}/model_versions/{version['id']}/artifacts").json()
    assert artifacts["items"][0]["artifactType"] == "model-artifact"
    by_type = http.get(f"{base}/artifacts", params={"filterQuery": "artifactType = 'model-artifact' AND "
                                                                    "uri = 's3://models/wire/v1'"}).json()
    assert [a["id"] for a in by_type["items"]] == [artifacts["items"][0]["id"]]
    assert http.get(f"{base}/artifacts", params={"artifactType": "metric"}).json()["items"] == []
    missing = http.get(f"{base}/registered_model", params={"name": "nope"})
    assert missing.status_code == 404 and set(missing.json()) == {"code", "message"}
    assert "nope" in missing.json()["message"]
    assert http.get(f"{base}/registered_models/999999").status_code == 404
    # each prefix serves upstream's document: as shipped under v1alpha3, moved to /v1 without experiments there
    old = http.get(f"{server.url}/api/model_registry/v1alpha3/openapi.json").json()
    assert old["info"]["title"] == "Model Registry REST API" and "ModelVersionCreate" in old["components"]["schemas"]
    assert "/api/model_registry/v1alpha3/experiments" in old["paths"]
    new = http.get(f"{base}/openapi.json").json()
    assert "/api/model_registry/v1/registered_models" in new["paths"]
    assert not any("experiment" in path for path in new["paths"])


def test_serving_records_and_v1alpha3_experiments(server: ServerProcess, registry: ModelRegistry,
                                                  http: httpx.Client) -> None:
    register(registry, "served", "v1")
    old = f"{server.url}/api/model_registry/v1alpha3"
    model = http.get(f"{old}/registered_model", params={"name": "served"}).json()
    version = http.get(f"{old}/model_version", params={"name": "v1", "parentResourceId": model["id"]}).json()
    env = http.post(f"{old}/serving_environments", json={"name": "local"})
    assert env.status_code == 201
    isvc = http.post(f"{old}/serving_environments/{env.json()['id']}/inference_services",
                      json={"name": "served-svc", "registeredModelId": model["id"], "modelVersionId": version["id"],
                            "servingEnvironmentId": env.json()["id"], "runtime": "sklearn"})
    assert isvc.status_code == 201, isvc.text
    assert isvc.json()["desiredState"] == "DEPLOYED"
    isvc_id = isvc.json()["id"]
    assert http.get(f"{old}/inference_services/{isvc_id}/model").json()["name"] == "served"
    assert http.get(f"{old}/inference_services/{isvc_id}/version").json()["name"] == "v1"
    serve = http.post(f"{old}/inference_services/{isvc_id}/serves", json={"modelVersionId": version["id"]})
    assert serve.status_code == 201 and serve.json()["lastKnownState"] == "UNKNOWN"
    patched = http.patch(f"{old}/inference_services/{isvc_id}", json={"desiredState": "UNDEPLOYED"})
    assert patched.json()["desiredState"] == "UNDEPLOYED" and patched.json()["runtime"] == "sklearn"

    experiment = http.post(f"{old}/experiments", json={"name": "tuning", "owner": "alice"}).json()
    # experimentId is required in the body too, as upstream's document and server say
    run = http.post(f"{old}/experiments/{experiment['id']}/experiment_runs",
                     json={"name": "run-1", "experimentId": experiment["id"]})
    assert run.status_code == 201 and run.json()["status"] == "RUNNING"
    run_id = run.json()["id"]
    for step, loss in enumerate((0.9, 0.5, 0.2)):
        metric = http.post(f"{old}/experiment_runs/{run_id}/artifacts",
                            json={"artifactType": "metric", "name": f"loss-{step}", "value": loss, "step": str(step)})
        assert metric.status_code == 201, metric.text
    history = http.get(f"{old}/experiment_runs/{run_id}/metric_history", params={"stepIds": "1,2"}).json()
    assert sorted(item["value"] for item in history["items"]) == [0.2, 0.5]
    # experiments exist only on the old prefix, as upstream removed them in v1
    assert http.get(f"{server.url}/api/model_registry/v1/experiments").status_code == 404


def test_token_protected_registry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from model_registry import ModelRegistry

    proc = ServerProcess.start(tmp_path / "home", token="t0ken")
    try:
        client = ModelRegistry("http://127.0.0.1", proc.port, author="bob", is_secure=False, user_token="t0ken")
        register(client, "secret-model", "v1", accuracy=0.9)
        assert client.get_model_artifact("secret-model", "v1").uri == "s3://models/secret-model/v1"  # type: ignore[union-attr]
        denied = httpx.get(f"{proc.url}/api/model_registry/v1/registered_models")
        assert denied.status_code == 401 and set(denied.json()) == {"code", "message"}
        with pytest.raises(Exception, match="401"):
            ModelRegistry("http://127.0.0.1", proc.port, author="bob", is_secure=False, user_token="wrong")
    finally:
        proc.stop()
