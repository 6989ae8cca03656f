"""``kfbox promote``: from a local kfbox (the laptop) to a second kfbox standing in for the cluster,
reached through the loopback oauth2-proxy/Dex gateway (its registry at /v1alpha3 only, as a 26.03
cluster), with moto's S3 server on loopback as the cluster's SeaweedFS. No Kubernetes here: the
kubectl apply of a Kubeflow target goes to a fake runner whose input is schema-checked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kfbox.client import ApiClient
from kfbox.cluster.contexts import Context, ContextStore
from kfbox.cluster.objects import check_kserve
from kfbox.cluster.promote import PROMOTED_FROM, promote
from kfbox.cluster.remote import Remote
from kfbox.cluster.runner import RecordingRunner
from kfbox.config import Settings
from kfbox.errors import Conflict, InvalidInput
from kfbox.storage.uris import UriResolver
from tests.cluster.conftest import S3_KEYS
from tests.cluster.dexgateway import PASSWORD, USER, Gateway
from tests.support import ServerProcess, run_cli

V1 = "/api/model_registry/v1"
V1ALPHA3 = "/api/model_registry/v1alpha3"


def _double(value: float) -> dict[str, Any]:
    return {"metadataType": "MetadataDoubleValue", "double_value": value}


@pytest.fixture(scope="module")
def laptop(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """The local kfbox with model 'iris-knn' v1: a real sklearn model folder, metrics, custom properties."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier

    folder = tmp_path_factory.mktemp("models") / "knn"
    folder.mkdir()
    x, y = load_iris(return_X_y=True)
    joblib.dump(KNeighborsClassifier(3).fit(x, y), folder / "model.joblib")
    with server.client() as http:
        model = http.post(f"{V1}/registered_models", json={"name": "iris-knn", "owner": "me",
                                                           "description": "KNN on iris"}).json()
        for name, accuracy in (("v1", 0.97), ("v2", 0.95), ("v3", 0.9)):
            version = http.post(f"{V1}/registered_models/{model['id']}/versions", json={
                "name": name, "author": "kfbox", "registeredModelId": model["id"],
                "customProperties": {"accuracy": _double(accuracy), "neighbors": _double(3)}}).json()
            http.post(f"{V1}/model_versions/{version['id']}/artifacts", json={
                "artifactType": "model-artifact", "name": "model", "uri": f"file://{folder}",
                "modelFormatName": "sklearn", "modelFormatVersion": "1"}).raise_for_status()
            http.post(f"{V1}/model_versions/{version['id']}/artifacts", json={
                "artifactType": "metric", "name": "accuracy", "value": accuracy}).raise_for_status()
    return server


def _context(gateway: Gateway, s3_endpoint: str | None, **kw: object) -> Context:
    values: dict[str, object] = {"name": "kind", "host": gateway.url, "auth": "dex", "username": USER,
                                 "password": PASSWORD, "kube_context": "kind-kubeflow", "s3_endpoint": s3_endpoint,
                                 "s3_access_key": S3_KEYS["access"], "s3_secret_key": S3_KEYS["secret"]}
    values.update(kw)
    return Context(**values).validate()  # type: ignore[arg-type]


def _promote(laptop: ServerProcess, context: Context, home: Path, version: str, **kw: Any) -> Any:
    source = ApiClient(laptop.url)
    return promote(source, UriResolver(Settings.load(home=laptop.home)), Remote(context, home), "iris-knn",
                   version, **kw)


def test_promote_copies_metadata_metrics_and_files_through_the_gateway(
        laptop: ServerProcess, gateway: Gateway, s3_endpoint: str, cluster_kfbox: ServerProcess,
        tmp_path: Path) -> None:
    runner = RecordingRunner()
    result = _promote(laptop, _context(gateway, s3_endpoint), tmp_path, "v1", deploy=True, runner=runner)
    assert result.created and result.uploaded_bytes > 0
    # the cluster's registry (seen directly, at the prefix the cluster serves) has the version and its metadata
    with cluster_kfbox.client() as http:
        model = http.get(f"{V1ALPHA3}/registered_model", params={"name": "iris-knn"}).json()
        assert model["description"] == "KNN on iris" and model["owner"] == "me"
        version = http.get(f"{V1ALPHA3}/model_version",
                           params={"name": "v1", "parentResourceId": model["id"]}).json()
        props = version["customProperties"]
        assert props["accuracy"]["double_value"] == 0.97 and props["neighbors"]["double_value"] == 3
        assert laptop.url in props[PROMOTED_FROM]["string_value"]
        artifacts = {a["artifactType"]: a for a in
                     http.get(f"{V1ALPHA3}/model_versions/{version['id']}/artifacts").json()["items"]}
    assert artifacts["metric"]["value"] == 0.97
    uri = artifacts["model-artifact"]["uri"]
    assert uri == "s3://mlpipeline/private/kubeflow-user-example-com/models/iris-knn/v1/model"
    assert artifacts["model-artifact"]["modelFormatName"] == "sklearn"
    # the files are in the cluster's S3 under that URI
    import boto3  # here, not at the top: every pytest worker imports this module

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=S3_KEYS["access"],
                      aws_secret_access_key=S3_KEYS["secret"], region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket="mlpipeline", Prefix="private/kubeflow-user-example-com/models/iris-knn/v1/")
    assert [o["Key"] for o in listed["Contents"]] == [
        "private/kubeflow-user-example-com/models/iris-knn/v1/model/model.joblib"]
    # --deploy on a Kubeflow target: one server-side kubectl apply of S3 access, the ISVC and its allow policy
    (command,) = runner.commands
    assert command.argv[:3] == ("kubectl", "--context", "kind-kubeflow") and "--server-side" in command.argv
    objects = {o["kind"]: o for o in yaml.safe_load_all(command.stdin or "")}
    assert set(objects) == {"Secret", "ServiceAccount", "InferenceService", "AuthorizationPolicy"}
    isvc = check_kserve(objects["InferenceService"])
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == uri
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "kfbox-s3"
    assert objects["Secret"]["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == "seaweedfs.kubeflow:8333"
    assert objects["AuthorizationPolicy"]["spec"]["selector"]["matchLabels"] == {
        "serving.knative.dev/service": "iris-knn-predictor"}


def test_promoting_again_changes_nothing(laptop: ServerProcess, gateway: Gateway, s3_endpoint: str,
                                         cluster_kfbox: ServerProcess, tmp_path: Path) -> None:
    context = _context(gateway, s3_endpoint)
    first = _promote(laptop, context, tmp_path, "v2")
    again = _promote(laptop, context, tmp_path, "v2")
    assert first.created and not again.created and again.version_id == first.version_id
    with cluster_kfbox.client() as http:
        items = http.get(f"{V1ALPHA3}/model_versions/{first.version_id}/artifacts").json()["items"]
    assert sorted(a["artifactType"] for a in items) == ["metric", "model-artifact"]


def test_a_version_made_on_the_cluster_is_not_overwritten(laptop: ServerProcess, gateway: Gateway,
                                                          s3_endpoint: str, cluster_kfbox: ServerProcess,
                                                          tmp_path: Path) -> None:
    with cluster_kfbox.client() as http, laptop.client() as local:
        local_model = local.get(f"{V1}/registered_model", params={"name": "iris-knn"}).json()
        local.post(f"{V1}/registered_models/{local_model['id']}/versions",
                   json={"name": "v9", "registeredModelId": local_model["id"]}).raise_for_status()
        remote_model = http.get(f"{V1ALPHA3}/registered_model", params={"name": "iris-knn"})
        model_id = remote_model.json()["id"] if remote_model.status_code == 200 else http.post(
            f"{V1ALPHA3}/registered_models", json={"name": "iris-knn"}).json()["id"]
        http.post(f"{V1ALPHA3}/registered_models/{model_id}/versions",
                  json={"name": "v9", "registeredModelId": model_id}).raise_for_status()
    with pytest.raises(Conflict, match="was not promoted from this registry"):
        _promote(laptop, _context(gateway, s3_endpoint), tmp_path, "v9")


def test_a_context_without_s3_is_told_how_to_add_it(laptop: ServerProcess, gateway: Gateway, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="--s3-endpoint"):
        _promote(laptop, _context(gateway, None), tmp_path, "v3")


def test_promote_cli_deploys_on_a_kfbox_target_and_it_serves(laptop: ServerProcess, s3_endpoint: str,
                                                              cluster_kfbox: ServerProcess, tmp_path: Path) -> None:
    """A kfbox target takes the InferenceService through its Kubernetes-style API and loads the s3:// model."""
    home = laptop.home
    ContextStore(home).add(Context(name="box", host=cluster_kfbox.url, auth="none", kind="kfbox",
                                   s3_endpoint=s3_endpoint, s3_access_key=S3_KEYS["access"],
                                   s3_secret_key=S3_KEYS["secret"]), make_current=False)
    done = run_cli("promote", "iris-knn", "--version", "v1", "--to", "box", "--deploy", "--name", "iris-promoted",
                   "--url", laptop.url, "--home", str(home), "-o", "json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["inference_service"] == "iris-promoted" and summary["context"] == "box"
    url = f"{cluster_kfbox.url}/apis/serving.kserve.io/v1beta1/namespaces/kubeflow-user-example-com/" \
          "inferenceservices/iris-promoted"
    deadline = time.monotonic() + 90
    ready: dict[str, Any] = {}
    while time.monotonic() < deadline:
        isvc = httpx.get(url, timeout=10).json()
        ready = next((c for c in isvc.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})
        if ready.get("status") == "True":
            break
        time.sleep(0.5)
    assert ready.get("status") == "True", isvc.get("status")
    prediction = httpx.post(f"{cluster_kfbox.url}/serving/kubeflow-user-example-com/iris-promoted/v1/models/"
                            "iris-promoted:predict", json={"instances": [[6.8, 2.8, 4.8, 1.4]]}, timeout=60)
    assert prediction.status_code == 200 and prediction.json()["predictions"] == [1]
