"""InferenceServices are checked against KServe's v1beta1 schema: unknown fields and features kfbox cannot
honour (transformer, explainer, custom containers, a container's envFrom/volumeMounts/workingDir...) get 422
naming the field, never a silent drop; a cluster manifest's pod-level fields pass. The field tables are checked
against the installed kserve SDK's models."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kfbox.apis import SERVING
from kfbox.serving import schema

ISVC = f"{SERVING}/namespaces/default/inferenceservices"
BASE: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
    "metadata": {"name": "iris", "namespace": "default"},
    "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://models/iris"}}},
}


def manifest(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return body


def create(app_client: TestClient, body: dict[str, Any]) -> Any:
    return app_client.post(ISVC, params={"dryRun": "All"}, json=body)


@pytest.mark.parametrize(("path", "value", "message"), [
    ("spec.transformer", {"containers": [{"name": "t", "image": "pre:1"}]}, "a transformer"),
    ("spec.explainer", {"art": {"type": "SquareAttack"}}, "an explainer is not supported"),
    ("spec.predictor.containers", [{"name": "kserve-container", "image": "me/server:1"}], "custom container"),
    ("spec.predictor.batcher", {"maxBatchSize": 32}, "batcher"),
    ("spec.predictor.onnx", {"storageUri": "pvc://models/m"}, "'onnx' is not served"),
    ("spec.predictor.model.image", "me/server:1", "custom model server image"),
    ("spec.predictor.model.envFrom", [{"secretRef": {"name": "creds"}}], "from Secrets or ConfigMaps"),
    ("spec.predictor.model.volumeMounts", [{"name": "m", "mountPath": "/mnt/models"}], "volume mounts"),
    ("spec.predictor.sklearn.volumeDevices", [{"name": "d", "devicePath": "/dev/xvda"}], "block devices"),
    ("spec.predictor.model.workingDir", "/app", "a working directory is not supported"),
    ("spec.predictor.sklaern", {"storageUri": "pvc://models/m"}, "unknown field 'sklaern'"),
    ("spec.predictor.model.storageURI", "pvc://models/m", "did you mean 'storageUri'?"),
    ("spec.predictr", {}, "unknown field 'predictr'"),
])
def test_unknown_and_unsupported_fields_get_422_naming_the_field(app_client: TestClient, path: str, value: Any,
                                                                  message: str) -> None:
    reply = create(app_client, manifest(path, value))
    assert reply.status_code == 422, reply.text
    status = reply.json()
    assert status["kind"] == "Status" and status["reason"] == "Invalid"
    assert f"{path}: " in status["message"] and message in status["message"]
    assert status["details"]["causes"][0]["field"] == path
    assert app_client.get(f"{ISVC}/iris").status_code == 404  # nothing stored


def test_a_cluster_manifests_pod_level_fields_are_accepted(app_client: TestClient) -> None:
    body = manifest("spec.predictor.serviceAccountName", "sa-minio-kserve")
    predictor = body["spec"]["predictor"]
    predictor.update(nodeSelector={"gpu": "false"}, tolerations=[], minReplicas=1, maxReplicas=2,
                     scaleMetric="concurrency", scaleTarget=8, transformer=None)
    predictor["model"].update(resources={"requests": {"cpu": "100m"}}, protocolVersion="v2",
                              runtime="kserve-sklearnserver")
    body["spec"]["transformer"] = None  # null is absent, as in Kubernetes
    reply = create(app_client, body)
    assert reply.status_code == 201, reply.text


def test_the_field_tables_match_kserves_own_schema() -> None:
    """Every field of KServe's models is classified (honoured, refused or unused), and kfbox names no field
    that KServe's schema lacks; a kserve upgrade that adds a field fails here until it is classified."""
    import kserve.models as models  # the kserve SDK's models are generated from KServe's schema

    def fields(name: str) -> set[str]:
        return set(getattr(models, name).attribute_map.values())

    def classified(honoured: frozenset[str], refused: dict[str, str], unused: frozenset[str]) -> set[str]:
        assert not (honoured & unused) and not (set(refused) & (honoured | unused))
        return set(honoured) | set(refused) | set(unused)

    assert classified(schema.SPEC_HONOURED, schema.SPEC_REFUSED, schema.SPEC_UNUSED) == fields(
        "V1beta1InferenceServiceSpec")
    assert classified(schema.PREDICTOR_HONOURED, schema.PREDICTOR_REFUSED, schema.PREDICTOR_UNUSED) == fields(
        "V1beta1PredictorSpec")
    assert classified(schema.MODEL_HONOURED, schema.MODEL_REFUSED, schema.MODEL_UNUSED) == fields("V1beta1ModelSpec")
    assert fields("V1beta1ModelFormat") == schema.MODEL_FORMAT_FIELDS
    for shorthand in ("V1beta1SKLearnSpec", "V1beta1XGBoostSpec", "V1beta1LightGBMSpec"):
        assert fields(shorthand) == fields("V1beta1ModelSpec") - {"modelFormat", "runtime"}
