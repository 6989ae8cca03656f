"""What an InferenceService manifest turns on: gRPC from a container port's name, as KServe manifests ask for it."""

from __future__ import annotations

from typing import Any

import pytest

from kfbox.errors import InvalidInput
from kfbox.serving.spec import InferenceServiceSpec


def parse(ports: list[dict[str, Any]], *, legacy: bool = False) -> InferenceServiceSpec:
    predictor: dict[str, Any] = (
        {"sklearn": {"storageUri": "pvc://models/iris", "ports": ports}} if legacy else
        {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://models/iris", "ports": ports}})
    return InferenceServiceSpec.parse({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                       "metadata": {"name": "iris"}, "spec": {"predictor": predictor}})


@pytest.mark.parametrize(("ports", "grpc"), [
    ([{"containerPort": 8081, "name": "h2c", "protocol": "TCP"}], True),  # Knative's name (kserve e2e test_sklearn)
    # kserve e2e test_grpc's dual-protocol predictor: Istio's protocol-by-name convention
    ([{"containerPort": 8081, "name": "grpc-port"}, {"containerPort": 8080, "name": "http-rest"}], True),
    ([{"containerPort": 8081, "name": "grpc"}], True),
    ([{"containerPort": 8080, "name": "http-rest"}], False),
    ([{"containerPort": 8080, "name": "grpcish"}], False),
    ([], False),
])
@pytest.mark.parametrize("legacy", [False, True], ids=["model", "sklearn"])
def test_a_port_named_for_grpc_turns_grpc_on(ports: list[dict[str, Any]], grpc: bool, legacy: bool) -> None:
    assert parse(ports, legacy=legacy).predictor.enable_grpc is grpc


def predictor(**fields: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.parse({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                       "metadata": {"name": "iris"}, "spec": {"predictor": {
                                           "model": {"modelFormat": {"name": "sklearn"},
                                                     "storageUri": "pvc://models/iris"}, **fields}}})


@pytest.mark.parametrize(("fields", "metric", "target"), [
    ({}, "concurrency", 100),
    ({"scaleMetric": "rps"}, "rps", 200),  # Knative's requests-per-second-target-default
    ({"scaleMetric": "rps", "scaleTarget": 5}, "rps", 5),  # kserve e2e test_sklearn_kserve_rps
])
def test_knatives_scale_metrics_are_served_with_knatives_default_targets(fields: dict[str, Any], metric: str,
                                                                         target: int) -> None:
    spec = predictor(**fields).predictor
    assert (spec.scale_metric, spec.scale_target) == (metric, target)


@pytest.mark.parametrize(("metric", "message"), [
    ("cpu", "'cpu' needs Kubernetes' HorizontalPodAutoscaler"),
    ("memory", "'memory' needs Kubernetes' HorizontalPodAutoscaler"),
    ("latency", "'latency' is not one of KServe's metrics kfbox serves: concurrency, rps"),
])
def test_other_scale_metrics_are_refused_saying_what_is_served(metric: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        predictor(scaleMetric=metric)
