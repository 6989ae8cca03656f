"""The iris pipelines compile to KFP IR that a Kubeflow cluster accepts.

No Kubernetes API server exists here, so the cluster side is checked on the compiled IR:
the structure the KFP backend and the kfp-kubernetes driver read.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from kfp import compiler

IRIS = Path(__file__).resolve().parents[2] / "examples" / "iris"


@pytest.fixture(scope="module")
def pipelines() -> ModuleType:
    spec = importlib.util.spec_from_file_location("iris_pipelines", IRIS / "pipelines.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["iris_pipelines"] = module
    spec.loader.exec_module(module)
    return module


def compile_docs(pipeline: Any, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(out))
    return list(yaml.safe_load_all(out.read_text()))


def test_training_pipeline_structure(pipelines: ModuleType, tmp_path: Path) -> None:
    (spec,) = compile_docs(pipelines.iris_training, tmp_path)
    assert spec["pipelineInfo"]["name"] == "iris-training"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["neighbors"]["defaultValue"] == [2, 6, 9]
    assert params["standard_scaler"]["defaultValue"] is True
    assert params["min_max_scaler"]["defaultValue"] is False
    root_tasks = spec["root"]["dag"]["tasks"]
    loop = next(t for t in root_tasks.values() if "parameterIterator" in t)
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("neighbors")
    body = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert {"train-knn", "register-model"} <= set(body)
    assert body["register-model"]["dependentTasks"] == ["train-knn"]
    assert body["register-model"]["cachingOptions"] == {}  # caching off for the side effect
    # every component installs what it imports, so it runs in a plain python image on a cluster
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["image"] == "python:3.11"
    register = " ".join(spec["deploymentSpec"]["executors"]["exec-register-model"]["container"]["command"])
    assert "model-registry" in register
    assert "model-registry-service.kubeflow.svc.cluster.local" in register  # in-cluster fallback


def test_selection_pipeline_creates_and_mounts_the_pvc(pipelines: ModuleType, tmp_path: Path) -> None:
    spec, platform = compile_docs(pipelines.iris_model_selection, tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert {"select-best-model", "createpvc", "copy-model-to-pvc", "deploy-inference-service"} <= set(tasks)
    create = spec["deploymentSpec"]["executors"][spec["components"]["comp-createpvc"]["executorLabel"]]
    assert create["container"]["image"] == "argostub/createpvc"  # the KFP driver performs it, no pod runs
    assert tasks["createpvc"]["inputs"]["parameters"]["pvc_name"]["runtimeValue"]["constant"] == "model-pvc"
    mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-copy-model-to-pvc"]["pvcMount"]
    assert mounts[0]["mountPath"] == "/mnt/models"
    assert mounts[0]["taskOutputParameter"]["producerTask"] == "createpvc"
    manifest = json.loads(spec["root"]["inputDefinitions"]["parameters"]["manifest"]["defaultValue"])
    assert manifest["kind"] == "InferenceService"
    assert manifest["metadata"] == {"name": "sklearn-inference", "namespace": "kubeflow-user-example-com",
                                    "annotations": {"sidecar.istio.io/inject": "false"}}
    assert manifest["spec"]["predictor"]["model"]["modelFormat"]["name"] == "sklearn"


def test_inference_manifest_is_a_valid_kserve_resource() -> None:
    manifest = yaml.safe_load((IRIS / "inference.yaml").read_text())
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["spec"]["predictor"]["model"]["storageUri"].startswith("pvc://model-pvc/models/")
