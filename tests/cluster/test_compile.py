"""``kfbox compile --for cluster``: the iris pipelines in the form a Kubeflow 26.03 cluster runs.

No Kubernetes or KFP backend here: the output is checked the way the backend reads it, the IR and
the kfp-kubernetes platform spec parsed strictly into their protobuf messages (unknown fields are
errors), plus what a pod needs: the PVC its mount names, the S3 keys of the profile, the
registry client speaking the prefix the cluster serves, no address of this machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2
from typer.testing import CliRunner

from kfbox.cli import main
from kfbox.cluster.compile import REGISTRY_CLIENT, pvc_problems
from kfbox.errors import InvalidInput

IRIS = Path(__file__).resolve().parents[2] / "examples" / "iris" / "pipelines.py"
LOOPBACK = re.compile(r"(?i)localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\]")


def compile_for(target: str, where: str, out: Path) -> tuple[str, list[dict[str, Any]]]:
    result = CliRunner().invoke(main.app, ["compile", target, "--for", where, "-o", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output or repr(result.exception)
    text = out.read_text()
    return result.output, list(yaml.safe_load_all(text))


@pytest.fixture(scope="module")
def selection(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, Any]], str]:
    out = tmp_path_factory.mktemp("compiled") / "selection.yaml"
    said, docs = compile_for(f"{IRIS}:iris_model_selection", "cluster", out)
    return said, docs, out.read_text()


def _executor_code(ir: dict[str, Any], name: str) -> str:
    container = ir["deploymentSpec"]["executors"][name]["container"]
    return "\n".join([*container.get("command", []), *container.get("args", [])])


def test_selection_pipeline_mounts_the_pvc_it_creates(selection: tuple[str, list[dict[str, Any]], str]) -> None:
    _, (ir, platform), _ = selection
    json_format.ParseDict(ir, pipeline_spec_pb2.PipelineSpec())  # strict: the backend's own message
    spec = json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    executors = spec.platforms["kubernetes"].deployment_spec.executors
    config = kubernetes_executor_config_pb2.KubernetesExecutorConfig()
    json_format.ParseDict(json_format.MessageToDict(executors["exec-copy-model-to-pvc"]), config)
    (mount,) = config.pvc_mount
    assert mount.mount_path == "/mnt/models"
    assert mount.pvc_name_parameter.task_output_parameter.producer_task == "createpvc"
    # the producer is kfp-kubernetes' CreatePVC with the name, size and kind's storage class
    tasks = ir["root"]["dag"]["tasks"]
    created = tasks["createpvc"]["inputs"]["parameters"]
    assert created["pvc_name"]["runtimeValue"]["constant"] == "model-pvc"
    assert (created["size"]["runtimeValue"]["constant"], created["storage_class_name"]["runtimeValue"]["constant"]) \
        == ("1Gi", "standard")
    assert tasks["copy-model-to-pvc"]["dependentTasks"] == ["createpvc", "select-best-model"]
    # the InferenceService the pipeline applies reads from that PVC
    manifest = json.loads(ir["root"]["inputDefinitions"]["parameters"]["manifest"]["defaultValue"])
    assert manifest["spec"]["predictor"]["model"]["storageUri"].startswith("pvc://model-pvc/")
    assert manifest["metadata"]["namespace"] == "kubeflow-user-example-com"
    assert pvc_problems(ir, platform) == []


def test_selection_pipeline_gets_the_profiles_s3_keys_and_the_in_cluster_store(
        selection: tuple[str, list[dict[str, Any]], str]) -> None:
    said, (ir, platform), _ = selection
    config = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-copy-model-to-pvc"]
    (secret,) = config["secretAsEnv"]
    assert secret["secretName"] == "mlpipeline-minio-artifact"
    assert {(k["secretKey"], k["envVar"]) for k in secret["keyToEnv"]} == {
        ("accesskey", "AWS_ACCESS_KEY_ID"), ("secretkey", "AWS_SECRET_ACCESS_KEY")}
    container = ir["deploymentSpec"]["executors"]["exec-copy-model-to-pvc"]["container"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["AWS_S3_ENDPOINT"] == "http://seaweedfs.kubeflow:8333"
    assert "secretAsEnv" not in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].get(
        "exec-select-best-model", {})
    assert "mlpipeline-minio-artifact" in said


def test_registry_client_matches_what_the_cluster_serves_and_the_defaults_are_in_cluster(
        selection: tuple[str, list[dict[str, Any]], str], tmp_path: Path) -> None:
    said, (ir, _), text = selection
    code = _executor_code(ir, "exec-select-best-model")
    assert f"'{REGISTRY_CLIENT}'" in code and "model-registry>=0.3.15" not in code
    assert "model-registry-service.kubeflow.svc.cluster.local" in code  # the component's in-cluster default
    assert "v1alpha3" in said  # the pin is said, with why
    assert not LOOPBACK.search(text)
    assert {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values() if "container" in e} \
        == {"python:3.11", "argostub/createpvc"}  # the second is KFP's placeholder for the driver-run createpvc
    assert "images: python:3.11\n" in said
    _, (training,) = compile_for(f"{IRIS}:iris_training", "cluster", tmp_path / "training.yaml")
    assert f"'{REGISTRY_CLIENT}'" in _executor_code(training, "exec-register-model")
    assert not LOOPBACK.search((tmp_path / "training.yaml").read_text())


def test_local_form_is_the_kfp_compilers_output(tmp_path: Path) -> None:
    _, (ir,) = compile_for(f"{IRIS}:iris_training", "local", tmp_path / "local.yaml")
    assert "model-registry>=0.3.15" in _executor_code(ir, "exec-register-model")


def test_a_localhost_default_is_refused_for_the_cluster(tmp_path: Path) -> None:
    source = tmp_path / "bad.py"
    source.write_text('''
from kfp import dsl


@dsl.component(base_image="python:3.11")
def fetch(url: str) -> str:
    return url


@dsl.pipeline(name="bad")
def bad(url: str = "http://127.0.0.1:8888/data.csv"):
    fetch(url=url)
''')
    result = CliRunner().invoke(main.app, ["compile", str(source), "--for", "cluster", "-o", str(tmp_path / "b.yaml")])
    assert isinstance(result.exception, InvalidInput)
    assert "root.inputDefinitions.parameters.url.defaultValue names '127.0.0.1'" in result.exception.message
    assert not (tmp_path / "b.yaml").exists()


def test_a_mount_of_a_pvc_from_nowhere_is_refused() -> None:
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {"exec-a": {"pvcMount": [
        {"mountPath": "data", "pvcNameParameter": {"taskOutputParameter": {"producerTask": "gone",
                                                                            "outputParameterKey": "name"}}}]}}}}}}
    problems = pvc_problems({"root": {"dag": {"tasks": {"a": {}}}}}, platform)
    assert problems == ["exec-a: PVC mount path 'data' is not absolute",
                        "exec-a: PVC name comes from task 'gone', which the pipeline does not have"]
    with pytest.raises(InvalidInput):
        from kfbox.cluster.compile import for_cluster

        for_cluster({"pipeline_spec": {"root": {"dag": {"tasks": {}}}, "deploymentSpec": {"executors": {}}},
                     "platform_spec": platform})
