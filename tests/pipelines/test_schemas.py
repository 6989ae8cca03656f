"""The KFP API declares every body and reply (kfbox.pipelines.schemas): they are in /openapi.json under
upstream's names, with upstream's field names and enums, and what the server answers validates against
what it declares. In-process (the app over ASGI), on rows written straight into its database."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from starlette.testclient import TestClient

from kfbox.pipelines.tables import Artifact, Run, Task

pytestmark = pytest.mark.inprocess

KFP = "/apis/v2beta1"
SPEC = {"pipelineInfo": {"name": "schemas"}, "root": {"dag": {"tasks": {}}}, "components": {},
        "deploymentSpec": {"executors": {}}, "schemaVersion": "2.1.0", "sdkVersion": "kfp-2.14.0"}

# Upstream's field names (backend/api/v2beta1/swagger/*.swagger.json at kubeflow/pipelines ae2440355f),
# and the fields kfbox adds, for each reply schema kfbox declares under upstream's name.
UPSTREAM: dict[str, set[str]] = {
    "V2beta1Experiment": {"experiment_id", "display_name", "description", "created_at", "namespace", "storage_state",
                          "last_run_created_at"},
    "V2beta1Pipeline": {"pipeline_id", "display_name", "name", "description", "created_at", "namespace", "error"},
    "V2beta1PipelineVersion": {"pipeline_id", "pipeline_version_id", "display_name", "name", "description",
                               "created_at", "package_url", "code_source_url", "pipeline_spec", "error"},
    "V2beta1Run": {"experiment_id", "run_id", "display_name", "storage_state", "description", "pipeline_version_id",
                   "pipeline_spec", "pipeline_version_reference", "runtime_config", "service_account", "created_at",
                   "scheduled_at", "finished_at", "state", "error", "run_details", "recurring_run_id",
                   "state_history"},
    "V2beta1PipelineTaskDetail": {"run_id", "task_id", "display_name", "create_time", "start_time", "end_time",
                                  "executor_detail", "state", "execution_id", "error", "inputs", "outputs",
                                  "parent_task_id", "state_history", "pod_name", "child_tasks"},
    "V2beta1RuntimeStatus": {"update_time", "state", "error"},
    "V2beta1RunDetails": {"pipeline_context_id", "pipeline_run_context_id", "task_details"},
    "V2beta1RuntimeConfig": {"parameters", "pipeline_root"},
    "V2beta1PipelineTaskExecutorDetail": {"main_job", "pre_caching_check_job", "failed_main_jobs",
                                          "failed_pre_caching_check_jobs"},
    "V2beta1RecurringRun": {"recurring_run_id", "display_name", "description", "pipeline_version_id", "pipeline_spec",
                            "pipeline_version_reference", "runtime_config", "service_account", "max_concurrency",
                            "trigger", "mode", "created_at", "updated_at", "status", "error", "no_catchup",
                            "namespace", "experiment_id"},
    "V2beta1Trigger": {"cron_schedule", "periodic_schedule"},
    "V2beta1PeriodicSchedule": {"start_time", "end_time", "interval_second"},
    "V2beta1CronSchedule": {"start_time", "end_time", "cron"},
    "V2beta1ListExperimentsResponse": {"experiments", "total_size", "next_page_token"},
    "V2beta1ListPipelinesResponse": {"pipelines", "total_size", "next_page_token"},
    "V2beta1ListPipelineVersionsResponse": {"pipeline_versions", "total_size", "next_page_token"},
    "V2beta1ListRunsResponse": {"runs", "total_size", "next_page_token"},
    "V2beta1ListRecurringRunsResponse": {"recurringRuns", "total_size", "next_page_token"},
    "V2beta1GetHealthzResponse": {"multi_user", "pipeline_store"},
}
KFBOX_ADDITIONS: dict[str, set[str]] = {
    "V2beta1PipelineTaskDetail": {"parameters", "input_parameters", "cache_hit", "kind", "path", "warnings",
                                  "skip_reason"},
    "V2beta1RecurringRun": {"last_run_at", "next_run_at", "run_ids"},
    "V2beta1GetHealthzResponse": {"commit_sha", "tag_name"},
}
ENUMS = {
    ("V2beta1Run", "state"): ["RUNTIME_STATE_UNSPECIFIED", "PENDING", "RUNNING", "SUCCEEDED", "SKIPPED", "FAILED",
                              "CANCELING", "CANCELED", "PAUSED"],
    ("V2beta1Run", "storage_state"): ["STORAGE_STATE_UNSPECIFIED", "AVAILABLE", "ARCHIVED"],
    ("V2beta1Experiment", "storage_state"): ["STORAGE_STATE_UNSPECIFIED", "AVAILABLE", "ARCHIVED"],
    ("V2beta1RecurringRun", "mode"): ["MODE_UNSPECIFIED", "ENABLE", "DISABLE"],
    ("V2beta1RecurringRun", "status"): ["STATUS_UNSPECIFIED", "ENABLED", "DISABLED"],
}


@pytest.fixture(scope="module")
def document(app_client: TestClient) -> dict[str, Any]:
    body: dict[str, Any] = app_client.get("/openapi.json").json()
    return body


def kfp_operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        if path.startswith(KFP + "/"):
            for method, operation in methods.items():
                yield method, path, operation


def test_every_kfp_route_declares_its_reply_and_body(document: dict[str, Any]) -> None:
    seen = 0
    for method, path, operation in kfp_operations(document):
        seen += 1
        content = operation["responses"]["200"]["content"]
        if path.endswith("/logs"):
            assert "text/plain" in content, path
            continue
        assert content["application/json"]["schema"].get("$ref", "").startswith("#/components/schemas/"), \
            f"{method.upper()} {path} declares no reply schema: {content}"
        body = operation.get("requestBody", {}).get("content", {})
        if method == "post" and not path.endswith(("}:archive", "}:unarchive", "}:terminate", "}:retry",
                                                   "}:enable", "}:disable")):
            declared = body.get("application/json") or body.get("multipart/form-data")
            assert declared and "$ref" in declared["schema"], f"POST {path} declares no body: {body}"
    assert seen >= 30  # every KFP route kfbox serves, recurring runs included


def test_declared_fields_are_upstreams_names(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name, fields in UPSTREAM.items():
        declared = set(schemas[name]["properties"])
        unknown = declared - fields - KFBOX_ADDITIONS.get(name, set())
        assert not unknown, f"{name} declares fields upstream does not have: {sorted(unknown)}"
    for (name, field), values in ENUMS.items():
        assert schemas[name]["properties"][field]["enum"] == values, (name, field)


def test_the_routes_reply_under_upstreams_schema_names(document: dict[str, Any]) -> None:
    def reply(method: str, path: str) -> str:
        ref: str = document["paths"][KFP + path][method]["responses"]["200"]["content"]["application/json"]["schema"][
            "$ref"]
        return ref.rsplit("/", 1)[1]

    assert reply("get", "/runs/{run_id}") == "V2beta1Run"
    assert reply("get", "/runs") == "V2beta1ListRunsResponse"
    assert reply("post", "/pipelines/create") == "V2beta1Pipeline"
    assert reply("get", "/pipelines/{pipeline_id}/versions") == "V2beta1ListPipelineVersionsResponse"
    assert reply("get", "/recurringruns") == "V2beta1ListRecurringRunsResponse"
    assert reply("delete", "/runs/{run_id}") == "Empty"


def seed_run(app_client: TestClient, experiment_id: str) -> str:
    """A finished run with a task, a DAG and an artifact, written as the engine would (no worker started)."""
    platform = app_client.app.state.platform  # type: ignore[attr-defined]
    run_id, dag_id, task_id, now = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), int(time.time() * 1000)
    with platform.db.write() as s:
        s.add(Run(id=run_id, experiment_id=experiment_id, display_name="seeded", description="", pipeline_spec=SPEC,
                  parameters={"lr": 0.1}, pipeline_root="", service_account="", storage_state="AVAILABLE",
                  state="FAILED", error="boom", created_ms=now, scheduled_ms=now, finished_ms=now + 5,
                  state_history=[{"ms": now, "state": "PENDING"}, {"ms": now + 5, "state": "FAILED"}]))
        s.flush()
        s.add(Task(id=dag_id, run_id=run_id, parent_id=None, name="root", path="", kind="dag", state="FAILED",
                   cache_hit=False, parameters={}, created_ms=now))
        s.add(Task(id=task_id, run_id=run_id, parent_id=dag_id, name="train", path="train", kind="container",
                   state="FAILED", cache_hit=False, error="boom", parameters={"n": 3}, log_path=None, created_ms=now,
                   started_ms=now, finished_ms=now + 4,
                   details={"attempts": 2, "inputs": {"parameters": {"lr": 0.1}, "artifacts": {"data": ["file:///d"]}},
                            "state_history": [{"ms": now, "state": "RUNNING"},
                                              {"ms": now + 4, "state": "FAILED", "error": "boom"}]}))
        s.flush()
        s.add(Artifact(run_id=run_id, task_id=task_id, direction="output", key="model", name="model",
                       uri="file:///m", schema_title="system.Model", artifact_metadata={"a": 1}, created_ms=now))
    return run_id


def test_replies_validate_against_what_is_declared(app_client: TestClient, document: dict[str, Any]) -> None:
    def check(method: str, template: str, url: str, **kwargs: Any) -> dict[str, Any]:
        response = app_client.request(method, KFP + url, **kwargs)
        assert response.status_code == 200, response.text
        schema = document["paths"][KFP + template][method.lower()]["responses"]["200"]["content"][
            "application/json"]["schema"]
        body: dict[str, Any] = response.json()
        jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(body)
        return body

    experiment = check("POST", "/experiments", "/experiments", json={"display_name": "schemas-exp"})
    check("GET", "/experiments", "/experiments")
    pipeline = check("POST", "/pipelines/create", "/pipelines/create",
                     json={"pipeline": {"display_name": "schemas-p"}, "pipeline_version": {"pipeline_spec": SPEC}})
    pid = pipeline["pipeline_id"]
    version = check("POST", "/pipelines/{pipeline_id}/versions", f"/pipelines/{pid}/versions",
                    json={"display_name": "v2", "pipeline_spec": SPEC})
    check("GET", "/pipelines/{pipeline_id}/versions/{version_id}",
          f"/pipelines/{pid}/versions/{version['pipeline_version_id']}")
    check("GET", "/pipelines/{pipeline_id}/versions", f"/pipelines/{pid}/versions")
    check("GET", "/pipelines", "/pipelines")
    check("GET", "/pipelines/names/{name}", "/pipelines/names/schemas-p")
    run_id = seed_run(app_client, experiment["experiment_id"])
    run = check("GET", "/runs/{run_id}", f"/runs/{run_id}")
    tasks = {t["display_name"]: t for t in run["run_details"]["task_details"]}
    assert tasks["train"]["outputs"]["model"]["artifact_ids"] and tasks["train"]["parameters"] == {"n": 3}
    assert tasks["train"]["executor_detail"]["failed_main_jobs"] == ["train"] and tasks["root"]["executor_detail"] == {}
    listed = check("GET", "/runs", "/runs", params={"page_size": 5})
    assert "run_details" not in listed["runs"][0]
    check("GET", "/artifacts/{artifact_id}", f"/artifacts/{tasks['train']['outputs']['model']['artifact_ids'][0]}")
    check("GET", "/healthz", "/healthz")
    schedule = check("POST", "/recurringruns", "/recurringruns",
                     json={"display_name": "schemas-every-hour", "pipeline_spec": SPEC, "mode": "DISABLE",
                           "trigger": {"periodic_schedule": {"interval_second": "3600"}}})
    got = check("GET", "/recurringruns/{recurring_run_id}", f"/recurringruns/{schedule['recurring_run_id']}")
    assert got["run_ids"] == [] and got["status"] == "DISABLED" and got["next_run_at"] is None
    check("GET", "/recurringruns", "/recurringruns")
    assert check("POST", "/runs/{run_id}:archive", f"/runs/{run_id}:archive") == {}


@pytest.mark.parametrize(("path", "body", "words"), [
    ("/runs", {"display_name": 3}, "display_name: Input should be a valid string"),
    ("/runs", {"display_name": "r", "runtime_config": {"parameters": []}}, "runtime_config.parameters"),
    ("/experiments", ["not", "an", "object"], "must be a JSON object"),
    ("/recurringruns", {"display_name": "x", "mode": "SOMETIMES"}, "mode: Input should be"),
    ("/pipelines/create", {"pipeline": "p"}, "pipeline: Input should be"),
])
def test_a_body_that_does_not_fit_is_a_400_naming_the_field(app_client: TestClient, path: str, body: Any,
                                                            words: str) -> None:
    response = app_client.post(KFP + path, json=body)
    assert response.status_code == 400, response.text
    assert words in response.json()["message"] and response.json()["code"] == 3
