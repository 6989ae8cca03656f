"""What an InferenceService manifest turns on: gRPC from a container port's name, as KServe manifests ask for it."""

from __future__ import annotations

from typing import Any

import pytest

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
