"""Pipelines submitted with kfp.Client run through kfp.local in a worker, with history kept by the server."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from kfp import Client

from tests.pipelines import sample_pipelines as samples
from tests.pipelines.conftest import process_gone, task_pid, tasks_by_path, wait_run
from tests.support import ServerProcess, upstream_registry


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server  # the package's server (tests/pipelines/conftest.py)


def test_acceptance_pipeline_runs_with_control_flow_artifacts_and_registry(server: ServerProcess,
                                                                          kfp_client: Client) -> None:
    result = kfp_client.create_run_from_pipeline_func(samples.acceptance, arguments={"items": [1, 2, 3, 4]},
                                                      experiment_name="acceptance")
    run = kfp_client.wait_for_run_completion(result.run_id, timeout=180, sleep_duration=0.5)
    assert run.state == "SUCCEEDED", run.error
    names = [t.display_name for t in run.run_details.task_details]
    assert names.count("square") == 4
    assert {"make-dataset", "add-all", "train", "register", "report"} <= set(names)
    assert "say" not in names  # the Else branch did not run: 1+4+9+16 > 5

    body = wait_run(server, result.run_id)
    tasks = tasks_by_path(body)  # paths follow the IR's nesting: the exit handler's DAG, its condition DAGs
    assert tasks["exit-handler-1/add-all"]["parameters"] == {"Output": 30}
    assert {t["state"] for t in tasks.values() if t["kind"] != "dag"} == {"SUCCEEDED"}
    skipped = [t for t in tasks.values() if t["state"] == "SKIPPED"]
    assert [t["kind"] for t in skipped] == ["dag"] and "is false" in skipped[0]["skip_reason"]  # the Else branch
    train = next(t for t in body["run_details"]["task_details"] if t["display_name"] == "train")
    assert set(train["outputs"]) == {"model", "metrics", "confusion"}
    metrics_id = train["outputs"]["metrics"]["artifact_ids"][0]
    metrics = httpx.get(f"{server.url}/apis/v2beta1/artifacts/{metrics_id}").json()
    assert metrics["type"] == "system.Metrics" and metrics["metadata"]["accuracy"] == pytest.approx(0.9)
    confusion = httpx.get(f"{server.url}/apis/v2beta1/artifacts/{train['outputs']['confusion']['artifact_ids'][0]}")
    assert confusion.json()["metadata"]["confusionMatrix"]["rows"][0]["row"] == [3, 1]
    model = httpx.get(f"{server.url}/apis/v2beta1/artifacts/{train['outputs']['model']['artifact_ids'][0]}").json()
    model_path = Path(model["uri"])
    assert model_path.is_relative_to(server.home / "artifacts" / result.run_id)
    assert model_path.read_text() == "model trained on 8 rows, scale 30"
    report = next(t for t in body["run_details"]["task_details"] if t["display_name"] == "report")
    assert report["parameters"] == {"Output": "COMPLETE"}  # PipelineTaskFinalStatus.state, as the KFP backend says

    registry = upstream_registry(server.port, author="test")
    artifact = registry.get_model_artifact("acceptance-model", "v1")
    assert artifact is not None and artifact.uri == model["uri"]
    register_log = httpx.get(f"{server.url}/apis/v2beta1/runs/{result.run_id}/tasks/register/logs").text
    assert "already installed; running without pip" in register_log


def failed_runs_counted(server: ServerProcess) -> float:
    """kfbox_pipeline_runs_finished_total{state="FAILED"} on /metrics (0 before the first failed run)."""
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith('kfbox_pipeline_runs_finished_total{state="FAILED"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_failing_component_fails_the_run_with_its_exception(server: ServerProcess, kfp_client: Client) -> None:
    counted_before = failed_runs_counted(server)  # the server is shared: other modules' runs may have failed
    result = kfp_client.create_run_from_pipeline_func(samples.failing, arguments={"message": "kaput"})
    run = kfp_client.wait_for_run_completion(result.run_id, timeout=120, sleep_duration=0.3)
    assert run.state == "FAILED"
    assert "ValueError: boom: kaput" in run.error.message
    tasks = {t.display_name: t for t in run.run_details.task_details}
    assert tasks["explode"].state == "FAILED" and "ValueError: boom: kaput" in tasks["explode"].error.message
    assert tasks["say"].state == "SKIPPED"  # its upstream failed: recorded, never started
    log = httpx.get(f"{server.url}/pipeline/apis/v2beta1/runs/{result.run_id}/tasks/explode/logs").text
    assert "Traceback" in log and "ValueError: boom: kaput" in log
    assert server.healthy()
    deadline = time.monotonic() + 10  # counted once the worker process is gone
    while failed_runs_counted(server) < counted_before + 1:
        assert time.monotonic() < deadline, "the failed run was not counted on /metrics"
        time.sleep(0.2)


def test_hanging_task_is_cancelled_with_its_processes(server: ServerProcess, kfp_client: Client) -> None:
    result = kfp_client.create_run_from_pipeline_func(samples.hanging, arguments={"seconds": 600})
    wait_run(server, result.run_id, states=("RUNNING",))
    pid = task_pid(server, result.run_id, "hang")
    kfp_client.terminate_run(result.run_id)
    body = wait_run(server, result.run_id, timeout=30)
    assert body["state"] == "CANCELED"
    assert tasks_by_path(body)["hang"]["state"] == "CANCELED"
    assert process_gone(pid), f"task process {pid} outlived the cancel"
    assert server.healthy()


def test_identical_run_is_answered_from_the_cache(server: ServerProcess, kfp_client: Client) -> None:
    def submitted(**kwargs: object) -> tuple[str, dict]:
        result = kfp_client.create_run_from_pipeline_func(samples.cacheable, arguments={"x": 7}, **kwargs)
        body = wait_run(server, result.run_id)
        assert body["state"] == "SUCCEEDED", body["error"]
        return result.run_id, tasks_by_path(body)

    def log(run_id: str, task: dict) -> str:
        return httpx.get(f"{server.url}/apis/v2beta1/runs/{run_id}/tasks/{task['task_id']}/logs").text

    first_run, first_tasks = submitted()
    second_run, second_tasks = submitted()
    uncached_run, uncached_tasks = submitted(enable_caching=False)
    assert not any(t["cache_hit"] for t in first_tasks.values())
    assert all(t["cache_hit"] for t in second_tasks.values())
    assert second_tasks["slow-square-2"]["parameters"] == {"Output": 2401}
    # the cache answered: neither slow task ran again (no executor output in the second run's logs)
    for path in ("slow-square", "slow-square-2"):
        assert "answered from the cache" not in log(first_run, first_tasks[path])
        assert "answered from the cache" in log(second_run, second_tasks[path])
        assert "answered from the cache" not in log(uncached_run, uncached_tasks[path])
    assert not any(t["cache_hit"] for t in uncached_tasks.values())
    assert uncached_tasks["slow-square-2"]["parameters"] == {"Output": 2401}


def test_satisfied_packages_run_offline(server: ServerProcess, kfp_client: Client) -> None:
    result = kfp_client.create_run_from_pipeline_func(samples.offline)
    body = wait_run(server, result.run_id)
    assert body["state"] == "SUCCEEDED", body["error"]
    task = tasks_by_path(body)["with-packages"]
    assert task["parameters"]["Output"].endswith("index=http://127.0.0.1:9/simple")
    log = httpx.get(f"{server.url}/apis/v2beta1/runs/{result.run_id}/tasks/with-packages/logs").text
    assert "already installed; running without pip" in log
