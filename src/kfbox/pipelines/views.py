"""Rows as KFP v2beta1 JSON: the shapes declared in :mod:`kfbox.pipelines.schemas` (``kfp_server_api``'s models).

States are stored as KFP's enum names, so they are cast, not mapped."""

from __future__ import annotations

import datetime
from typing import Any, cast

from kfbox.pipelines import schemas
from kfbox.pipelines.tables import Artifact, Experiment, Pipeline, PipelineVersion, Run, Task

# google.rpc.Code values KFP puts in error bodies.
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 413: 3, 501: 12, 503: 14, 500: 13, 507: 8}
UNKNOWN = 2


def timestamp(ms: int | None) -> str | None:
    if ms is None:
        return None
    stamp = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status(message: str | None, code: int = UNKNOWN) -> schemas.GooglerpcStatus | None:
    return None if not message else {"code": code, "message": message, "details": []}


def error_body(http_status: int, message: str) -> dict[str, Any]:
    """KFP's error shape: ``{"error", "code", "message", "details"}``."""
    return {"error": message, "code": GRPC_CODES.get(http_status, UNKNOWN), "message": message, "details": []}


def experiment(row: Experiment) -> schemas.V2beta1Experiment:
    return {"experiment_id": row.id, "display_name": row.display_name, "description": row.description,
            "created_at": timestamp(row.created_ms), "namespace": row.namespace,
            "storage_state": cast(schemas.StorageState, row.storage_state),
            "last_run_created_at": timestamp(row.last_run_ms)}


def pipeline(row: Pipeline) -> schemas.V2beta1Pipeline:
    return {"pipeline_id": row.id, "display_name": row.display_name, "name": row.display_name,
            "description": row.description, "created_at": timestamp(row.created_ms), "namespace": row.namespace}


def pipeline_version(row: PipelineVersion, with_spec: bool = True) -> schemas.V2beta1PipelineVersion:
    body: schemas.V2beta1PipelineVersion = {"pipeline_id": row.pipeline_id, "pipeline_version_id": row.id,
                            "display_name": row.display_name, "name": row.display_name,
                            "description": row.description, "created_at": timestamp(row.created_ms)}
    if with_spec:
        body["pipeline_spec"] = row.pipeline_spec
    return body


def run(row: Run, tasks: list[Task] | None = None, artifacts: list[Artifact] | None = None) -> schemas.V2beta1Run:
    body: schemas.V2beta1Run = {
        "experiment_id": row.experiment_id, "run_id": row.id, "display_name": row.display_name,
        "storage_state": cast(schemas.StorageState, row.storage_state), "description": row.description,
        "runtime_config": {"parameters": row.parameters, "pipeline_root": row.pipeline_root},
        "service_account": row.service_account, "created_at": timestamp(row.created_ms),
        "scheduled_at": timestamp(row.scheduled_ms), "finished_at": timestamp(row.finished_ms),
        "state": cast(schemas.RuntimeState, row.state), "error": status(row.error),
        "state_history": [{"update_time": timestamp(h["ms"]), "state": h["state"]} for h in row.state_history],
    }
    if row.pipeline_version_id:
        body["pipeline_version_id"] = row.pipeline_version_id
        body["pipeline_version_reference"] = {"pipeline_id": row.pipeline_id,
                                              "pipeline_version_id": row.pipeline_version_id}
    else:
        body["pipeline_spec"] = row.pipeline_spec
    if tasks is not None:
        outputs: dict[str, list[Artifact]] = {}
        for art in artifacts or []:
            outputs.setdefault(art.task_id, []).append(art)
        by_uri = {art.uri: str(art.id) for art in artifacts or []}
        # one pass: a 400-task run read 160,000 pairs
        children: dict[str | None, list[schemas.PipelineTaskDetailChildTask]] = {}
        for t in tasks:
            children.setdefault(t.parent_id, []).append({"task_id": t.id, "pod_name": t.path})
        body["run_details"] = {"task_details": [task(t, outputs.get(t.id, []), children.get(t.id, []), by_uri)
                                                for t in tasks]}
    return body


def task(row: Task, artifacts: list[Artifact], children: list[schemas.PipelineTaskDetailChildTask],
         by_uri: dict[str, str] | None = None) -> schemas.V2beta1PipelineTaskDetail:
    """A V2beta1PipelineTaskDetail; ``pod_name`` is the task's path, unique within the run; ``children``: the
    ``child_tasks`` entries (task_id, pod_name) of the tasks whose parent it is."""
    outputs: dict[str, schemas.V2beta1ArtifactList] = {}
    for art in artifacts:
        outputs.setdefault(art.key, {"artifact_ids": []})["artifact_ids"].append(str(art.id))
    details = row.details or {}
    given = details.get("inputs") or {}
    inputs: dict[str, schemas.V2beta1ArtifactList] = {
        name: {"artifact_ids": [(by_uri or {}).get(uri, "") for uri in uris]}
        for name, uris in (given.get("artifacts") or {}).items()}
    history: list[schemas.V2beta1RuntimeStatus] = [
        {"update_time": timestamp(h["ms"]), "state": h["state"], "error": status(h.get("error"))}
        for h in details.get("state_history", [])]
    main_job = details.get("pod_name") or row.path
    return {
        "run_id": row.run_id, "task_id": row.id, "display_name": row.name,
        "create_time": timestamp(row.created_ms), "start_time": timestamp(row.started_ms),
        "end_time": timestamp(row.finished_ms), "state": cast(schemas.RuntimeState, row.state),
        "error": status(row.error),
        "execution_id": row.id, "parent_task_id": row.parent_id, "pod_name": row.path,
        "inputs": inputs, "outputs": outputs, "child_tasks": children, "state_history": history,
        "executor_detail": {} if row.kind == "dag" else {
            "main_job": main_job, "failed_main_jobs": [main_job] * max(0, int(details.get("attempts") or 1) - 1)},
        # kfbox additions (ignored by kfp.Client): output and input parameters, whether the cache answered,
        # the task's path, warnings (settings with no local meaning), why a task was skipped.
        "parameters": row.parameters, "input_parameters": given.get("parameters") or {}, "cache_hit": row.cache_hit,
        "kind": cast(schemas.TaskKind, row.kind), "path": row.path, "warnings": details.get("warnings") or [],
        "skip_reason": details.get("reason"),
    }


def artifact(row: Artifact) -> schemas.Artifact:
    return {"artifact_id": str(row.id), "run_id": row.run_id, "task_id": row.task_id, "name": row.name,
            "key": row.key, "uri": row.uri, "type": row.schema_title, "metadata": row.artifact_metadata,
            "created_at": timestamp(row.created_ms)}
