"""Input resolution as the backend driver does it (``driver/resolve.go``), CEL, and placeholders.

Parameters come from the parent DAG's inputs (``componentInputParameter``), a sibling's output
(``taskOutputParameter``), a constant (``runtimeValue``, whose ``{{$.inputs.parameters[...]}}``
and job placeholders are filled after the others), or the final status of the task an exit
handler guards (``taskFinalStatus``); ``parameterExpressionSelector`` then picks a field.
Conditions (``triggerPolicy.condition``) and selectors are the small CEL subset the KFP
compiler writes, translated to a Python expression over the resolved values.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from kfbox.pipelines.orchestrator import ir

Artifact = dict[str, Any]  # ExecutorInput form: name, uri, metadata, type{schemaTitle, schemaVersion}
MISSING = object()

# google.rpc.Code of a failure: ``PipelineTaskFinalStatus.error_code`` ("the google.rpc.Code in case of
# error", kfp.dsl.task_final_status). The backend driver at ae2440355f leaves the error empty (a TODO in
# driver/resolve.go), so kfbox fills what that TODO names, by the cause it knows.
CANCELLED = 1  # the run was cancelled
UNKNOWN = 2  # the component failed (exit code, exception, signal): gRPC's code for an application error
DEADLINE_EXCEEDED = 4  # the task exceeded its timeout (activeDeadlineSeconds)
FAILED_PRECONDITION = 9  # the task could not start: an input without a value, a missing runtime


@dataclasses.dataclass
class Result:
    """What a finished task left for its siblings: state, outputs, error."""

    name: str
    task_id: str
    state: str  # SUCCEEDED | FAILED | SKIPPED | CANCELED
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    artifacts: dict[str, list[Artifact]] = dataclasses.field(default_factory=dict)
    error: str | None = None
    code: int | None = None  # google.rpc.Code of the failure (CANCELLED, UNKNOWN, ...), None when it did not fail


@dataclasses.dataclass
class Job:
    """Run-wide values the placeholders name."""

    run_id: str
    display_name: str
    resource_name: str
    pipeline_root: str
    create_time: str
    schedule_time: str


@dataclasses.dataclass
class Scope:
    """One DAG instance: its inputs and its finished children."""

    parameters: dict[str, Any]
    artifacts: dict[str, list[Artifact]]
    results: dict[str, Result] = dataclasses.field(default_factory=dict)
    retries: int = 0  # the attempt of an enclosing retried sub-DAG: what {{retries}} counts inside it


class ResolveError(Exception):
    """An input the task needs cannot be resolved (the task fails with this message)."""


def job_placeholders(job: Job, task_name: str, task_id: str) -> dict[str, str]:
    return {"{{$.pipeline_job_name}}": job.display_name, "{{$.pipeline_job_resource_name}}": job.resource_name,
            "{{$.pipeline_job_uuid}}": job.run_id, "{{$.pipeline_task_name}}": task_name,
            "{{$.pipeline_task_uuid}}": task_id, "{{$.pipeline_root}}": job.pipeline_root,
            "{{$.pipeline_job_create_time_utc}}": job.create_time,
            "{{$.pipeline_job_schedule_time_utc}}": job.schedule_time}


def as_text(value: Any) -> str:
    """A parameter as it appears inside a string (the backend's text form of a protobuf Value)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


_INPUT_REF = re.compile(r"\{\{\$\.inputs\.parameters\[['\"]([^'\"]+)['\"]\]\}\}")


def fill(text: str, placeholders: dict[str, str], parameters: dict[str, Any]) -> str:
    for key, value in placeholders.items():
        if key in text:
            text = text.replace(key, value)
    return _INPUT_REF.sub(lambda m: as_text(parameters[m.group(1)]) if m.group(1) in parameters else m.group(0),
                          text)


def resolve_inputs(task: dict[str, Any], component: dict[str, Any], scope: Scope, placeholders: dict[str, str],
                   job: Job, attempt: int = 0) -> tuple[dict[str, Any], dict[str, list[Artifact]]]:
    """The task's parameter and artifact inputs, defaults applied; ResolveError when one is missing."""
    spec = task.get("inputs", {})
    declared = component.get("inputDefinitions", {})
    parameters: dict[str, Any] = {}
    constants: dict[str, Any] = {}
    for name, source in spec.get("parameters", {}).items():
        if "runtimeValue" in source:
            constants[name] = source["runtimeValue"].get("constant")
            continue
        value = _parameter(name, source, scope, job)
        if value is not MISSING and source.get("parameterExpressionSelector"):
            value = evaluate(source["parameterExpressionSelector"], {}, value)
        if value is not MISSING:
            parameters[name] = value
    for name, value in constants.items():
        if isinstance(value, str):
            value = fill(value.replace("{{retries}}", str(attempt)), placeholders, parameters)
        parameters[name] = value
    artifacts: dict[str, list[Artifact]] = {}
    for name, source in spec.get("artifacts", {}).items():
        found = _artifact(source, scope)
        if found is not None:
            artifacts[name] = found
    for name, definition in declared.get("parameters", {}).items():
        if name not in parameters:
            if "defaultValue" in definition:
                parameters[name] = definition["defaultValue"]
            elif not definition.get("isOptional") and name in spec.get("parameters", {}):
                raise ResolveError(f"input parameter {name!r} has no value: {_describe(spec['parameters'][name])}")
        if name in parameters:
            parameters[name] = coerce(parameters[name], definition.get("parameterType", ""))
    for name, definition in declared.get("artifacts", {}).items():
        if name not in artifacts and not definition.get("isOptional") and name in spec.get("artifacts", {}):
            raise ResolveError(f"input artifact {name!r} has no value: {_describe(spec['artifacts'][name])}")
    return parameters, artifacts


def _describe(source: dict[str, Any]) -> str:
    if "taskOutputParameter" in source:
        ref = source["taskOutputParameter"]
        return f"task {ref.get('producerTask')!r} produced no output {ref.get('outputParameterKey')!r}"
    if "taskOutputArtifact" in source:
        ref = source["taskOutputArtifact"]
        return f"task {ref.get('producerTask')!r} produced no artifact {ref.get('outputArtifactKey')!r}"
    return f"the parent DAG has no input {next(iter(source.values()))!r}"


def _parameter(name: str, source: dict[str, Any], scope: Scope, job: Job) -> Any:
    if "componentInputParameter" in source:
        return scope.parameters.get(source["componentInputParameter"], MISSING)
    if "taskOutputParameter" in source:
        ref = source["taskOutputParameter"]
        result = scope.results.get(ref.get("producerTask", ""))
        if result is None:
            return MISSING
        return result.parameters.get(ref.get("outputParameterKey", ""), MISSING)
    if "taskFinalStatus" in source:
        producer = source["taskFinalStatus"].get("producerTask", "")
        result = scope.results.get(producer)
        state = "COMPLETE" if result is not None and result.state == "SUCCEEDED" else (
            result.state if result is not None else "FAILED")
        status: dict[str, Any] = {"state": state, "pipelineJobResourceName": job.resource_name,
                                  "pipelineTaskName": producer, "error": {}}
        if result is not None and result.state in ("FAILED", "CANCELED"):
            code = result.code or (CANCELLED if result.state == "CANCELED" else UNKNOWN)
            status["error"] = {"code": code, "message": result.error or f"task {producer!r} ended {result.state}"}
        return status
    return MISSING


def _artifact(source: dict[str, Any], scope: Scope) -> list[Artifact] | None:
    if "componentInputArtifact" in source:
        return scope.artifacts.get(source["componentInputArtifact"])
    if "taskOutputArtifact" in source:
        ref = source["taskOutputArtifact"]
        result = scope.results.get(ref.get("producerTask", ""))
        return None if result is None else result.artifacts.get(ref.get("outputArtifactKey", ""))
    return None


def coerce(value: Any, kind: str) -> Any:
    """JSON numbers as the declared type: a NUMBER_INTEGER stays an int (``2``, not ``2.0``)."""
    if kind == "NUMBER_INTEGER" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind in ("LIST", "STRUCT") and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


# --- CEL, the subset the KFP compiler writes -------------------------------------------------
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_PARAM = re.compile(r"inputs\.parameter_values\[")
_WORDS = {"true": "True", "false": "False", "null": "None"}


def _to_python(expression: str) -> str:
    out: list[str] = []
    position = 0
    for match in _STRING.finditer(expression):
        out.append(_code(expression[position:match.start()]))
        out.append(match.group(0))
        position = match.end()
    out.append(_code(expression[position:]))
    return "".join(out)


def _code(part: str) -> str:
    part = _PARAM.sub("_P[", part)
    part = part.replace("&&", " and ").replace("||", " or ")
    part = re.sub(r"!(?!=)", " not ", part)
    return re.sub(r"\b(true|false|null)\b", lambda m: _WORDS[m.group(1)], part)


def _number(value: Any) -> float:
    return float(value)


def _string(value: Any) -> str:
    return as_text(value)


def evaluate(expression: str, parameters: dict[str, Any], value: Any = None) -> Any:
    """A CEL condition over ``inputs.parameter_values``, or a selector over ``string_value``/``number_value``."""
    names = {"_P": parameters, "int": lambda v: int(float(v)) if isinstance(v, str) else int(v),
             "double": _number, "string": _string, "parseJson": json.loads, "size": len,
             "string_value": value if isinstance(value, str) else json.dumps(value), "number_value": value,
             "bool_value": value, "struct_value": value, "list_value": value}
    try:
        return eval(_to_python(expression), {"__builtins__": {}}, names)
    except Exception as exc:
        raise ResolveError(f"cannot evaluate {expression!r}: {type(exc).__name__}: {exc}") from exc


def condition_holds(task: dict[str, Any], parameters: dict[str, Any]) -> bool:
    condition = task.get("triggerPolicy", {}).get("condition")
    return True if not condition else bool(evaluate(condition, parameters))


def dag_outputs(component: dict[str, Any], scope: Scope) -> tuple[dict[str, Any], dict[str, list[Artifact]]]:
    """A DAG's outputs from its children: the first producer that has one (OneOf picks the branch that ran)."""
    spec = component.get("dag", {}).get("outputs", {})
    declared = component.get("outputDefinitions", {}).get("parameters", {})
    parameters: dict[str, Any] = {}
    for name, source in spec.get("parameters", {}).items():
        selectors = source.get("valueFromOneof", {}).get("parameterSelectors") or [source.get("valueFromParameter")]
        for selector in selectors:
            if not selector:
                continue
            result = scope.results.get(selector.get("producerSubtask", ""))
            if result is not None and selector.get("outputParameterKey") in result.parameters:
                kind = declared.get(name, {}).get("parameterType", "")
                parameters[name] = coerce(result.parameters[selector["outputParameterKey"]], kind)
                break
    artifacts: dict[str, list[Artifact]] = {}
    for name, source in spec.get("artifacts", {}).items():
        for selector in source.get("artifactSelectors", []):
            result = scope.results.get(selector.get("producerSubtask", ""))
            if result is not None and selector.get("outputArtifactKey") in result.artifacts:
                artifacts[name] = result.artifacts[selector["outputArtifactKey"]]
                break
    return parameters, artifacts


def collect(component: dict[str, Any], iterations: list[tuple[dict[str, Any], dict[str, list[Artifact]]]]
            ) -> tuple[dict[str, Any], dict[str, list[Artifact]]]:
    """A loop's outputs: each output a list over the iterations that produced it (``dsl.Collected``)."""
    parameters: dict[str, Any] = {}
    artifacts: dict[str, list[Artifact]] = {}
    spec = component.get("dag", {}).get("outputs", {})
    for name in spec.get("parameters", {}):
        parameters[name] = [params[name] for params, _ in iterations if name in params]
    for name in spec.get("artifacts", {}):
        artifacts[name] = [a for _, arts in iterations for a in arts.get(name, [])]
    return parameters, artifacts


__all__ = ["CANCELLED", "DEADLINE_EXCEEDED", "FAILED_PRECONDITION", "MISSING", "UNKNOWN", "Artifact", "Job",
           "ResolveError", "Result", "Scope", "collect", "condition_holds", "dag_outputs", "evaluate", "fill", "ir",
           "job_placeholders", "resolve_inputs"]
