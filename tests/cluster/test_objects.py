"""Every manifest kfbox writes for a cluster validates against the schema of its kind, offline:
core kinds with kubernetes-validate (Kubernetes 1.34, the 26.03 node, strict), KServe kinds with
the kserve SDK's models (kfbox.cluster.objects.check_kserve), the Istio AuthorizationPolicy with
the CRD schema 26.03 installs (tests/cluster/schemas). A broken variant of each must fail, so
the validators are shown to bite.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kfbox.cluster import monitoring
from kfbox.cluster.objects import (
    STANDARD,
    check_kserve,
    inference_service,
    model_pvc,
    predictor_authorization_policy,
    s3_access,
)
from kfbox.errors import InvalidInput

K8S = "1.34"
NS = "kubeflow-user-example-com"
ISTIO_SCHEMA = json.loads((Path(__file__).parent / "schemas/istio-authorizationpolicy-v1.json").read_text())
EXAMPLE = Path(__file__).parents[2] / "examples/iris/inference.yaml"


def _core_objects() -> list[dict[str, Any]]:
    return [*s3_access("kfbox-s3", NS, "seaweedfs.kubeflow:8333", "AKIA", "secret"), model_pvc("model-pvc", NS),
            model_pvc("model-pvc", NS, "20Gi", storage_class="standard"), monitoring.dashboard_configmap()]


@pytest.mark.parametrize("obj", _core_objects(), ids=lambda o: o["kind"])
def test_core_kinds_validate_against_kubernetes_134(obj: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(obj, K8S, strict=True) == K8S
    broken = copy.deepcopy(obj)
    broken["metadata"]["labels"] = {"app.kubernetes.io/managed-by": 7}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S, strict=True)


def test_pvc_with_a_misspelt_field_is_refused_by_the_schema() -> None:
    broken = model_pvc("model-pvc", NS)
    broken["spec"]["accessMode"] = broken["spec"].pop("accessModes")
    with pytest.raises(kubernetes_validate.ValidationError, match="accessMode"):
        kubernetes_validate.validate(broken, K8S, strict=True)


@pytest.mark.parametrize("mode", ["Knative", STANDARD])
def test_authorization_policy_matches_istios_crd_schema(mode: str) -> None:
    policy = predictor_authorization_policy("iris", NS, mode)
    jsonschema.validate(policy, ISTIO_SCHEMA)
    labels = policy["spec"]["selector"]["matchLabels"]
    assert labels == ({"serving.knative.dev/service": "iris-predictor"} if mode == "Knative"
                      else {"serving.kserve.io/inferenceservice": "iris"})
    broken = copy.deepcopy(policy)
    broken["spec"]["action"] = "PERMIT"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, ISTIO_SCHEMA)


@pytest.mark.parametrize("mode", ["Knative", STANDARD])
def test_inference_service_validates_with_the_kserve_sdk_models(mode: str) -> None:
    isvc = inference_service("iris", NS, "s3://mlpipeline/models/iris/v1", model_format="sklearn",
                             service_account="kfbox-s3", mode=mode)
    assert check_kserve(isvc) is isvc
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode


def test_the_iris_example_manifest_validates_too() -> None:
    check_kserve(yaml.safe_load(EXAMPLE.read_text()))


@pytest.mark.parametrize(("path", "value", "message"), [
    (("spec", "predictor", "model", "storageURI"), "s3://x", "unknown field"),
    (("spec", "predictor", "minReplicas"), "one", "expected int"),
    (("spec", "predictor", "model", "modelFormat", "name"), 3, "expected str"),
    (("spec", "predictor", "model", "resources", "requests"), ["cpu"], "expected a map"),
])
def test_broken_inference_services_are_refused(path: tuple[str, ...], value: Any, message: str) -> None:
    isvc = inference_service("iris", NS, "s3://b/k", model_format="sklearn")
    node = isvc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(InvalidInput, match=message):
        check_kserve(isvc)


def test_names_are_checked_before_writing() -> None:
    with pytest.raises(InvalidInput):
        inference_service("Iris_Model", NS, "s3://b/k", model_format="sklearn")
    with pytest.raises(InvalidInput):
        model_pvc("model-pvc", NS, size="lots")


def test_dashboard_queries_the_sidecar_metrics_the_podmonitor_scrapes() -> None:
    board = json.loads(monitoring.dashboard_configmap()["data"]["kfbox-kserve.json"])
    exprs = " ".join(t["expr"] for panel in board["panels"] for t in panel["targets"])
    assert "istio_requests_total" in exprs and "istio_request_duration_milliseconds_bucket" in exprs
    endpoint = monitoring.predictor_podmonitor()["spec"]["podMetricsEndpoints"][0]
    assert endpoint == {"port": "http-envoy-prom", "path": "/stats/prometheus", "interval": "15s"}
