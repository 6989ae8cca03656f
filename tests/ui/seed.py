"""Seeding the dashboard's tests: real runs through the KFP API, models through the registry API,
and (for size tests) rows written straight into the server's database, as a long-lived install has.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from kfp import compiler

from tests.pipelines import sample_pipelines as samples
from tests.support import ServerProcess

FINAL = ("SUCCEEDED", "FAILED", "CANCELED")
MR = "/api/model_registry/v1alpha3"
SCRIPT = "<script>document.title='owned'</script>"


def compiled(name: str, folder: Path) -> dict[str, Any]:
    from tests.ui import artifact_pipeline

    path = folder / f"{name}.yaml"
    if not path.exists():
        source = artifact_pipeline if hasattr(artifact_pipeline, name) else samples
        compiler.Compiler().compile(getattr(source, name), str(path))
    return dict(yaml.safe_load(path.read_text()))


def submit(http: httpx.Client, spec: dict[str, Any], name: str, **parameters: Any) -> str:
    reply = http.post("/apis/v2beta1/runs", json={"display_name": name, "pipeline_spec": spec,
                                                  "runtime_config": {"parameters": parameters}})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["run_id"])


def wait_run(http: httpx.Client, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = http.get(f"/apis/v2beta1/runs/{run_id}").json()
        if body["state"] in FINAL:
            return body
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {body.get('state')} after {timeout}s")


def wide_spec(tasks: int = 600, width: int = 20) -> dict[str, Any]:
    """A compiled-IR-shaped pipeline of ``tasks`` tasks in rows of ``width``, each waiting for the task
    above it, plus one loop and one condition group. Its executor is a container image, so a run of
    it is refused at creation (no container runtime) and kept FAILED: the graph is all that is drawn."""
    names = [f"step-{i}" for i in range(tasks)]
    dag_tasks: dict[str, Any] = {
        name: {"taskInfo": {"name": name}, "componentRef": {"name": "comp-step"},
               **({"dependentTasks": [names[i - width]]} if i >= width else {})}
        for i, name in enumerate(names)}
    dag_tasks["for-loop-1"] = {"taskInfo": {"name": "for-loop-1"}, "componentRef": {"name": "comp-for-loop-1"},
                               "dependentTasks": [names[-1]],
                               "parameterIterator": {"itemInput": "item", "items": {"raw": "[1, 2, 3]"}}}
    dag_tasks["condition-2"] = {"taskInfo": {"name": "condition-2"}, "componentRef": {"name": "comp-condition-2"},
                                "dependentTasks": [names[-1]], "triggerPolicy": {"condition": "1 == 1"}}
    inner = {"tasks": {"inner": {"taskInfo": {"name": "inner"}, "componentRef": {"name": "comp-step"}}}}
    return {"pipelineInfo": {"name": f"wide-{tasks}"}, "schemaVersion": "2.1.0", "sdkVersion": "kfp-2.17.3",
            "root": {"dag": {"tasks": dag_tasks}},
            "components": {"comp-step": {"executorLabel": "exec-step"},
                           "comp-for-loop-1": {"dag": inner}, "comp-condition-2": {"dag": inner}},
            "deploymentSpec": {"executors": {"exec-step": {"container": {"image": "alpine:3",
                                                                          "command": ["echo", "hi"]}}}}}


def add_task_rows(server: ServerProcess, run_id: str, tasks: int) -> None:
    """Record tasks for a run as an engine would (mixed states), straight into the server's database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{server.home / 'kfbox.db'}")
    now = int(time.time() * 1000)
    states = ["SUCCEEDED", "SUCCEEDED", "RUNNING", "FAILED", "SUCCEEDED"]
    rows = [{"id": str(uuid.uuid4()), "run_id": run_id, "name": f"step-{i}", "path": f"step-{i}",
             "state": states[i % len(states)], "ms": now} for i in range(tasks)]
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO pipelines_tasks (id, run_id, parent_id, name, path, kind, state, cache_hit,"
                          " parameters, created_ms, started_ms) VALUES (:id, :run_id, NULL, :name, :path,"
                          " 'container', :state, 0, '{}', :ms, :ms)"), rows)
    engine.dispose()


def register_model(http: httpx.Client, name: str, uri: str, description: str = "",
                   versions: tuple[str, ...] = ("v1",), metrics: dict[str, float] | None = None) -> dict[str, str]:
    """A registered model with versions and model artifacts, through the Model Registry REST API."""
    model = http.post(f"{MR}/registered_models", json={"name": name, "description": description})
    assert model.status_code in (200, 201), model.text
    model_id = model.json()["id"]
    ids = {"model": model_id}
    for number, version in enumerate(versions):
        props = {k: {"metadataType": "MetadataDoubleValue", "double_value": v + number / 100}
                 for k, v in (metrics or {}).items()}
        made = http.post(f"{MR}/model_versions", json={"name": version, "registeredModelId": model_id,
                                                        "author": "tester", "customProperties": props})
        assert made.status_code in (200, 201), made.text
        ids[version] = made.json()["id"]
        art = http.post(f"{MR}/model_versions/{ids[version]}/artifacts",
                        json={"artifactType": "model-artifact", "name": f"{name}-{version}", "uri": uri,
                              "modelFormatName": "sklearn", "modelFormatVersion": "1"})
        assert art.status_code in (200, 201), art.text
    return ids
