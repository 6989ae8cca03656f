"""The cluster form of a compiled pipeline: what a Kubeflow 26.03 cluster needs that kfbox supplies itself.

A pipeline written for both places (``examples/iris``) reads its platform from the environment
and falls back to in-cluster defaults. On kfbox the executor sets that environment; on a cluster
nothing does, so ``kfbox compile --for cluster`` (and ``kfbox run --context`` to a cluster)
adds, to the IR and its kfp-kubernetes platform spec:

* **the registry client the cluster serves**: a 26.03 cluster's Model Registry (v0.3.7) serves
  only ``/api/model_registry/v1alpha3``; ``model-registry`` 0.3.15+ speaks ``/v1``. Every
  ``pip install 'model-registry...'`` becomes ``model-registry==0.3.14`` (the newest client
  speaking v1alpha3), said in a note: the skew handled at compile time, not found at run time;
* **S3 for components that use boto3**: the profile's ``mlpipeline-minio-artifact`` keys as
  ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (``secretAsEnv``) and ``AWS_S3_ENDPOINT`` =
  ``http://seaweedfs.kubeflow:8333`` unless the component sets its own;

and refuses what cannot work in a pod: a loopback address (``localhost``, ``127.x``, ``::1``,
``0.0.0.0``) anywhere in a default, env value, command or importer URI; a ``file://`` importer;
a PVC mount without a mount path or with a PVC name that comes from nowhere.

Example::

    form = for_cluster(load_spec("examples/iris/pipelines.py:iris_model_selection"))
    form.notes                    # ['select-best-model: model-registry>=0.3.15 -> model-registry==0.3.14 ...']
    Path("selection.yaml").write_text(to_yaml(form.spec))
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from typing import Any

import yaml

from kfbox.errors import InvalidInput
from kfbox.pipelines import spec as specs

REGISTRY_CLIENT = "model-registry==0.3.14"
S3_SECRET = "mlpipeline-minio-artifact"
S3_ENDPOINT = "http://seaweedfs.kubeflow:8333"
_REGISTRY_REQ = re.compile(r"""(['"]?)model[-_]registry(?:\[[^\]]*\])?(?:\s*[<>=!~][^'"\s]*)?\1""")
_LOOPBACK = re.compile(r"(?i)(?<![\w.-])(localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|0\.0\.0\.0|\[::1\])(?![\w-])")


@dataclasses.dataclass
class ClusterForm:
    spec: dict[str, Any]
    notes: list[str]
    images: dict[str, str]
    """executor -> image the cluster pulls"""


def for_cluster(spec: dict[str, Any]) -> ClusterForm:
    """The cluster form of a compiled pipeline (``{"pipeline_spec", "platform_spec"}`` or a bare IR)."""
    pipeline = copy.deepcopy(specs.pipeline_part(spec))
    platform = copy.deepcopy(specs.platform_part(spec))
    notes: list[str] = []
    images: dict[str, str] = {}
    executors = pipeline.get("deploymentSpec", {}).get("executors", {})
    k8s_executors = platform.setdefault("platforms", {}).setdefault("kubernetes", {}) \
        .setdefault("deploymentSpec", {}).setdefault("executors", {})
    for name, executor in executors.items():
        container = executor.get("container")
        if not isinstance(container, dict):
            continue
        if container.get("image") and not str(container["image"]).startswith("argostub/"):  # driver-run, not pulled
            images[name] = str(container["image"])
        code = "\n".join(map(str, [*container.get("command", []), *container.get("args", [])]))
        _pin_registry_client(name, container, notes)
        if "boto3" in code:
            _s3_access(name, container, k8s_executors.setdefault(name, {}), notes)
    if not k8s_executors:
        platform["platforms"]["kubernetes"]["deploymentSpec"].pop("executors")
    problems = loopback_addresses(pipeline, platform) + pvc_problems(pipeline, platform)
    if problems:
        raise InvalidInput("This pipeline cannot run on a cluster as compiled: " + "; ".join(problems))
    has_platform = bool(platform["platforms"]["kubernetes"]["deploymentSpec"])
    cluster_spec = {"pipeline_spec": pipeline, "platform_spec": platform} if has_platform else pipeline
    return ClusterForm(cluster_spec, notes, images)


def _pin_registry_client(name: str, container: dict[str, Any], notes: list[str]) -> None:
    for key in ("command", "args"):
        for index, part in enumerate(container.get(key) or []):
            if not isinstance(part, str) or "pip install" not in part:
                continue
            found = _REGISTRY_REQ.search(part)
            if found and found[0].strip("'\"") != REGISTRY_CLIENT:
                container[key][index] = _REGISTRY_REQ.sub(lambda m: f"{m[1]}{REGISTRY_CLIENT}{m[1]}", part)
                notes.append(f"{name}: {found[0].strip(chr(39) + chr(34))} -> {REGISTRY_CLIENT} (the cluster's "
                             "Model Registry serves /api/model_registry/v1alpha3; clients 0.3.15+ speak /v1)")


def _s3_access(name: str, container: dict[str, Any], k8s: dict[str, Any], notes: list[str]) -> None:
    env = container.setdefault("env", [])
    if not any(e.get("name") in ("AWS_S3_ENDPOINT", "S3_ENDPOINT_URL") for e in env):
        env.append({"name": "AWS_S3_ENDPOINT", "value": S3_ENDPOINT})
    if not any(e.get("name") == "AWS_DEFAULT_REGION" for e in env):
        env.append({"name": "AWS_DEFAULT_REGION", "value": "us-east-1"})
    secrets = k8s.setdefault("secretAsEnv", [])
    if not any(s.get("secretName") == S3_SECRET for s in secrets):
        secrets.append({"secretName": S3_SECRET, "optional": False,
                        "secretNameParameter": {"runtimeValue": {"constant": S3_SECRET}},
                        "keyToEnv": [{"secretKey": "accesskey", "envVar": "AWS_ACCESS_KEY_ID"},
                                     {"secretKey": "secretkey", "envVar": "AWS_SECRET_ACCESS_KEY"}]})
    notes.append(f"{name}: uses boto3: S3 at {S3_ENDPOINT} with the profile's {S3_SECRET} keys")


def _strings(value: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(where, value)]
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _strings(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _strings(item, f"{where}[{i}]")]
    return []


def loopback_addresses(pipeline: dict[str, Any], platform: dict[str, Any]) -> list[str]:
    """Where the IR names this machine (a pod's localhost is the pod), or a file:// importer."""
    problems = []
    for where, text in _strings(pipeline, "pipeline_spec") + _strings(platform, "platform_spec"):
        if where.rsplit(".", 1)[-1] == "description":  # prose, not an address
            continue
        found = _LOOPBACK.search(text)
        if found:
            problems.append(f"{where} names {found[0]!r} (a pod's localhost is the pod: use an in-cluster "
                            "service address)")
        elif ".importer." in where and text.startswith("file://"):
            problems.append(f"{where} imports {text!r} (a pod cannot read this machine's files: use s3://)")
    return problems


def pvc_problems(pipeline: dict[str, Any], platform: dict[str, Any]) -> list[str]:
    """Each kfp-kubernetes ``pvcMount``: an absolute mount path, and a PVC name that exists somewhere."""
    problems = []
    tasks = _all_tasks(pipeline)
    executors = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    for name, config in executors.items():
        for mount in config.get("pvcMount") or []:
            path = mount.get("mountPath", "")
            if not str(path).startswith("/"):
                problems.append(f"{name}: PVC mount path {path!r} is not absolute")
            source = mount.get("pvcNameParameter") or {}
            producer = (source.get("taskOutputParameter") or mount.get("taskOutputParameter") or {}).get("producerTask")
            constant = (source.get("runtimeValue") or {}).get("constant") or mount.get("constant")
            if producer is not None and producer not in tasks:
                problems.append(f"{name}: PVC name comes from task {producer!r}, which the pipeline does not have")
            elif producer is None and not constant and not source.get("componentInputParameter") \
                    and not mount.get("componentInputParameter"):
                problems.append(f"{name}: PVC mount at {path!r} names no PVC")
    return problems


def _all_tasks(pipeline: dict[str, Any]) -> set[str]:
    names = set(pipeline.get("root", {}).get("dag", {}).get("tasks") or {})
    for component in (pipeline.get("components") or {}).values():
        names |= set((component.get("dag") or {}).get("tasks") or {})
    return names


def to_yaml(spec: dict[str, Any]) -> str:
    """The file ``kfp.Client.create_run_from_pipeline_package`` and the KFP UI take: IR, then platform spec."""
    docs = [specs.pipeline_part(spec)] + ([specs.platform_part(spec)] if specs.platform_part(spec) else [])
    return yaml.safe_dump_all(json.loads(json.dumps(docs)), sort_keys=False)
