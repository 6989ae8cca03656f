"""The compiled ``PipelineSpec`` as plain dicts, with the look-ups the scheduler needs.

Field names are the IR's JSON names (``componentRef``, ``dependentTasks``, ``triggerPolicy``...).
``check()`` lists what this engine cannot run, naming the feature and the task, so such a
pipeline is refused at submit instead of hanging.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kfbox.config import Settings

EXIT_STRATEGY = "ALL_UPSTREAM_TASKS_COMPLETED"
KNOWN_TASK_FIELDS = {"taskInfo", "componentRef", "inputs", "dependentTasks", "triggerPolicy", "parameterIterator",
                     "artifactIterator", "iteratorPolicy", "cachingOptions", "retryPolicy"}
KNOWN_PARAMETER_SOURCES = {"componentInputParameter", "taskOutputParameter", "runtimeValue", "taskFinalStatus"}
KNOWN_ARTIFACT_SOURCES = {"componentInputArtifact", "taskOutputArtifact", "componentInputArtifacts"}


class Pipeline:
    """One run's spec: ``Pipeline(spec_dict, platform_dict)``."""

    def __init__(self, spec: dict[str, Any], platform: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.name: str = spec.get("pipelineInfo", {}).get("name", "pipeline")
        self.components: dict[str, Any] = spec.get("components", {})
        self.executors: dict[str, Any] = spec.get("deploymentSpec", {}).get("executors", {})
        self.root: dict[str, Any] = spec.get("root", {})
        kubernetes = (platform or {}).get("platforms", {}).get("kubernetes", {})
        self.kubernetes: dict[str, Any] = kubernetes.get("deploymentSpec", {}).get("executors", {})
        self.workspace = bool((kubernetes.get("pipelineConfig") or {}).get("workspace"))  # a workspace folder per run

    def component(self, name: str) -> dict[str, Any]:
        if name == "root":
            return self.root
        try:
            return dict(self.components[name])
        except KeyError:
            raise KeyError(f"the spec has no component {name!r}") from None

    def executor(self, label: str) -> dict[str, Any]:
        try:
            return dict(self.executors[label])
        except KeyError:
            raise KeyError(f"the spec has no executor {label!r}") from None

    def platform(self, label: str) -> dict[str, Any]:
        return dict(self.kubernetes.get(label) or {})


def tasks(component: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(component.get("dag", {}).get("tasks", {}))


def is_exit_task(task: dict[str, Any]) -> bool:
    return bool(task.get("triggerPolicy", {}).get("strategy") == EXIT_STRATEGY)


def loop_items(task: dict[str, Any], inputs: dict[str, Any], artifacts: dict[str, list[Any]]) -> list[Any] | None:
    """The items a ParallelFor task iterates over, or None when it is not a loop."""
    if "parameterIterator" in task:
        items = task["parameterIterator"].get("items", {})
        if "raw" in items:
            value: Any = items["raw"]
        else:
            value = inputs.get(items.get("inputParameter", ""))
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else []
        if not isinstance(value, list):
            raise ValueError(f"ParallelFor items must be a list; got {value!r}")
        return value
    if "artifactIterator" in task:
        name = task["artifactIterator"].get("items", {}).get("inputArtifact", "")
        return list(artifacts.get(name, []))
    return None


def importer_uris(pipeline: Pipeline) -> list[tuple[str, str]]:
    """``(executor label, URI)`` of every ``dsl.importer`` whose URI is a constant (known at submit)."""
    found = []
    for label, executor in sorted(pipeline.executors.items()):
        source = executor.get("importer", {}).get("artifactUri", {})
        value = source.get("constant")
        if isinstance(value, dict):
            value = value.get("stringValue")
        if isinstance(value, str) and value:
            found.append((label, value))
    return found


def check(pipeline: Pipeline, settings: Settings | None = None) -> list[str]:
    """What this engine cannot run, each naming the feature and where it is.

    With ``settings``, constant ``dsl.importer`` URIs are checked too (gs://, unknown schemes, s3://
    without an endpoint, bad file:// paths), so such a run is a 400 at submit, not a failed task.
    """
    problems: list[str] = []
    if settings is not None:
        from kfbox.errors import KfboxError
        from kfbox.pipelines.importer import check_uri

        for label, uri in importer_uris(pipeline):
            try:
                check_uri(uri, settings)
            except KfboxError as exc:
                problems.append(f"executor {label!r}: {exc}")
    seen: set[str] = set()

    def walk(component_name: str, where: str) -> None:
        if component_name in seen:
            return
        seen.add(component_name)
        try:
            component = pipeline.component(component_name)
        except KeyError as exc:
            problems.append(f"{where}: {exc.args[0]}")
            return
        if "dag" not in component:
            label = component.get("executorLabel", "")
            if label not in pipeline.executors:
                problems.append(f"{where}: component {component_name!r} names executor {label!r}, which the "
                                "spec does not define")
            return
        for task_name, task in tasks(component).items():
            here = f"task {task_name!r}"
            for field in sorted(set(task) - KNOWN_TASK_FIELDS):
                problems.append(f"{here}: IR field {field!r} is not supported by kfbox's engine")
            for name, source in task.get("inputs", {}).get("parameters", {}).items():
                if not set(source) & KNOWN_PARAMETER_SOURCES:
                    problems.append(f"{here}: input {name!r} has an unsupported source {sorted(source)}")
            for name, source in task.get("inputs", {}).get("artifacts", {}).items():
                if not set(source) & KNOWN_ARTIFACT_SOURCES:
                    problems.append(f"{here}: input artifact {name!r} has an unsupported source {sorted(source)}")
            ref = task.get("componentRef", {}).get("name", "")
            if not ref:
                problems.append(f"{here}: no componentRef")
                continue
            walk(ref, here)

    walk("root", "pipeline root")
    return problems
