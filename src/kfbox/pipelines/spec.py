"""Pipeline IR as the API receives it: parse packages, check parameters, find what cannot run here.

Plain dicts only (no kfp import), so the server stays light. A run's stored spec is either
the PipelineSpec itself or ``{"pipeline_spec": ..., "platform_spec": ...}`` -- the two
shapes ``kfp.Client`` sends.

Example::

    spec = parse_package(yaml_bytes, "p.yaml")
    args = check_parameters(spec, {"n": 3})
"""

from __future__ import annotations

import json
from typing import Any

from kfbox.errors import InvalidInput
from kfbox.parsing import load_json, load_yaml_documents

EXECUTOR_MODULE = "kfp.dsl.executor_main"
CREATE_PVC_IMAGE = "argostub/createpvc"
DELETE_PVC_IMAGE = "argostub/deletepvc"
PVC_IMAGES = (CREATE_PVC_IMAGE, DELETE_PVC_IMAGE)
# kfp-kubernetes settings that only steer Kubernetes scheduling; they have no local meaning.
SCHEDULING_ONLY = {"nodeSelector", "tolerations", "podMetadata", "imagePullPolicy", "imagePullSecret",
                   "nodeAffinity", "activeDeadlineSeconds", "enabledSharedMemory"}
LOCAL_EQUIVALENT = {"pvcMount", "secretAsEnv", "configMapAsEnv", "fieldPathAsEnv", "secretAsVolume",
                    "configMapAsVolume"}


def parse_package(data: bytes, filename: str = "pipeline.yaml") -> dict[str, Any]:
    """A compiled pipeline file (YAML with an optional platform document, or JSON) as a run spec."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"Pipeline package {filename!r} is not UTF-8 text (YAML or JSON): {exc}. "
                           "Compile it with: kfbox compile FILE.py -o pipeline.yaml") from exc
    docs = load_yaml_documents(text, f"Pipeline package {filename!r}")
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise InvalidInput(f"Pipeline package {filename!r} holds no pipeline spec. "
                           "Compile it with: kfbox compile FILE.py -o pipeline.yaml")
    if len(docs) == 1:
        return normalise(docs[0])
    return normalise({"pipeline_spec": docs[0], "platform_spec": docs[1]})


def normalise(spec: Any) -> dict[str, Any]:
    """Validate the shape and return the run spec in one of kfp.Client's two forms."""
    if isinstance(spec, str):
        spec = load_json(spec, "pipeline_spec")
    if not isinstance(spec, dict):
        raise InvalidInput("pipeline_spec must be an object (the compiled PipelineSpec).")
    pipeline = pipeline_part(spec)
    for key in ("pipelineInfo", "root", "deploymentSpec", "components"):
        if key not in pipeline and not (key == "components" and "dag" not in pipeline.get("root", {})):
            raise InvalidInput(f"pipeline_spec has no {key!r}; is it a compiled KFP v2 pipeline? "
                               "Compile it with: kfbox compile FILE.py -o pipeline.yaml")
    if not pipeline["pipelineInfo"].get("name"):
        raise InvalidInput("pipeline_spec.pipelineInfo.name is empty.")
    return spec


def pipeline_part(spec: dict[str, Any]) -> dict[str, Any]:
    inner = spec.get("pipeline_spec")
    return inner if isinstance(inner, dict) else spec


def platform_part(spec: dict[str, Any]) -> dict[str, Any]:
    inner = spec.get("platform_spec")
    return inner if isinstance(inner, dict) else {}


def pipeline_name(spec: dict[str, Any]) -> str:
    return str(pipeline_part(spec)["pipelineInfo"]["name"])


def input_definitions(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    params = pipeline_part(spec).get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return params if isinstance(params, dict) else {}


def check_parameters(spec: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
    """Arguments for the run: unknown, missing and wrong-typed parameters are errors."""
    given = dict(given or {})
    declared = input_definitions(spec)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise InvalidInput(f"Pipeline {pipeline_name(spec)!r} has no parameter {', '.join(map(repr, unknown))}. "
                           f"Its parameters: {describe_parameters(declared)}.")
    missing = [name for name, d in declared.items()
               if name not in given and "defaultValue" not in d and not d.get("isOptional")]
    if missing:
        raise InvalidInput(f"Pipeline {pipeline_name(spec)!r} needs parameter {', '.join(map(repr, missing))}. "
                           f"Its parameters: {describe_parameters(declared)}.")
    for name, value in given.items():
        kind = declared[name].get("parameterType", "STRING")
        if not _has_type(value, kind):
            raise InvalidInput(f"Parameter {name!r} of pipeline {pipeline_name(spec)!r} must be "
                               f"{_TYPE_WORDS.get(kind, kind)}; got {value!r} ({type(value).__name__}).")
    return given


def describe_parameters(declared: dict[str, dict[str, Any]]) -> str:
    if not declared:
        return "none"
    parts = []
    for name, d in declared.items():
        kind = _TYPE_WORDS.get(d.get("parameterType", "STRING"), "?")
        default = f"={d['defaultValue']!r}" if "defaultValue" in d else ""
        parts.append(f"{name} ({kind}){default}")
    return ", ".join(parts)


_TYPE_WORDS = {"STRING": "a string", "NUMBER_INTEGER": "an integer", "NUMBER_DOUBLE": "a number",
               "BOOLEAN": "a boolean", "LIST": "a list", "STRUCT": "an object"}


def _has_type(value: Any, kind: str) -> bool:
    if kind == "STRING":
        return isinstance(value, str)
    if kind == "NUMBER_INTEGER":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "NUMBER_DOUBLE":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "BOOLEAN":
        return isinstance(value, bool)
    if kind == "LIST":
        return isinstance(value, list)
    if kind == "STRUCT":
        return isinstance(value, dict)
    return True


def coerce_parameter(spec: dict[str, Any], name: str, raw: str) -> Any:
    """Turn a ``-p name=value`` string into the parameter's declared type (for the CLI)."""
    declared = input_definitions(spec)
    if name not in declared:
        raise InvalidInput(f"Pipeline {pipeline_name(spec)!r} has no parameter {name!r}. "
                           f"Its parameters: {describe_parameters(declared)}.")
    kind = declared[name].get("parameterType", "STRING")
    try:
        if kind == "STRING":
            return raw
        if kind == "NUMBER_INTEGER":
            return int(raw)
        if kind == "NUMBER_DOUBLE":
            return float(raw)
        if kind == "BOOLEAN":
            lowered = raw.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(raw)
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"Parameter {name!r} must be {_TYPE_WORDS.get(kind, kind)}; got {raw!r}.") from exc
    if not _has_type(value, kind):
        raise InvalidInput(f"Parameter {name!r} must be {_TYPE_WORDS.get(kind, kind)}; got {raw!r}.")
    return value


def unsupported_features(spec: dict[str, Any], containers: bool = False) -> list[str]:
    """What in this spec has no local equivalent: each entry names the feature and where it is.

    ``containers``: a container runtime is usable (container components can run).
    """
    problems: list[str] = []
    executors = pipeline_part(spec).get("deploymentSpec", {}).get("executors", {})
    for label, executor in sorted(executors.items()):
        container = executor.get("container")
        if container is None:
            if "importer" not in executor:
                problems.append(f"executor {label!r}: only Python components and importers run locally")
            continue
        if container.get("image") in PVC_IMAGES:
            continue
        command = [*container.get("command", []), *container.get("args", [])]
        if not containers and not any(EXECUTOR_MODULE in str(part) for part in command):
            problems.append(f"executor {label!r}: container component (image {container.get('image')!r}) needs a "
                            "container runtime, which this machine does not have; write it as a @dsl.component "
                            "or run it on a cluster with: kfbox run FILE --host URL")
    kubernetes = platform_part(spec).get("platforms", {}).get("kubernetes", {})
    for label, config in sorted(kubernetes.get("deploymentSpec", {}).get("executors", {}).items()):
        for feature in sorted(config or {}):
            if feature not in LOCAL_EQUIVALENT and feature not in SCHEDULING_ONLY:
                problems.append(f"executor {label!r}: kfp-kubernetes setting {feature!r} has no local equivalent")
    return problems


def override_caching(spec: dict[str, Any], enable: bool) -> None:
    """Set every task's caching option, nested DAGs included (``--no-cache``)."""
    pipeline = pipeline_part(spec)
    dags = [pipeline.get("root", {}), *list(pipeline.get("components", {}).values())]
    for component in dags:
        for task in component.get("dag", {}).get("tasks", {}).values():
            task.setdefault("cachingOptions", {})["enableCache"] = enable
