"""The run record is what the KFP API returns (issue 9, item 4): every DAG is a task, tasks link both ways,
executor tasks carry a unique pod name, their inputs, outputs, state history and executor detail, and task
ids fetch the logs of same-named tasks in different sub-DAGs. A failure shows on the task that failed.
A real server, submitted with the unchanged kfp.Client."""

# no `from __future__ import annotations`: kfp reads the components' annotations as types

import httpx
import pytest
from kfp import Client, dsl

from tests.pipelines.conftest import wait_run
from tests.support import ServerProcess


@dsl.component(base_image="python:3.11")
def leaf(x: int) -> int:
    print(f"leaf got {x}")
    return x + 1


@dsl.component(base_image="python:3.11")
def fail_on_purpose() -> None:
    raise ValueError("planned failure")


@dsl.component(base_image="python:3.11")
def report(status: dsl.PipelineTaskFinalStatus) -> str:
    return status.state


@dsl.pipeline(name="inner")
def inner(x: int) -> int:
    return leaf(x=x).set_caching_options(False).output


@dsl.pipeline(name="record")
def record() -> None:
    with dsl.ExitHandler(report().set_caching_options(False)):
        first = inner(x=1)
        second = inner(x=10)
        with dsl.ParallelFor([1, 2]) as item, dsl.If(item == 2):
            leaf(x=item).set_caching_options(False)
        fail_on_purpose().set_caching_options(False).after(first, second)


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server  # the package's server (tests/pipelines/conftest.py)


def test_the_run_record_has_every_dag_linked_tasks_and_logs_by_task_id(server: ServerProcess,
                                                                       kfp_client: Client) -> None:
    run_id = kfp_client.create_run_from_pipeline_func(record).run_id
    body = wait_run(server, run_id)
    assert body["state"] == "FAILED"
    tasks = body["run_details"]["task_details"]
    by_id = {t["task_id"]: t for t in tasks}
    roots = [t for t in tasks if not t["parent_task_id"]]
    assert len(roots) == 1 and roots[0]["kind"] == "dag"
    for t in tasks:  # links both ways
        if t["parent_task_id"]:
            parent = by_id[t["parent_task_id"]]
            assert t["task_id"] in [c["task_id"] for c in parent["child_tasks"]]
        for child in t["child_tasks"]:
            assert by_id[child["task_id"]]["parent_task_id"] == t["task_id"]
    dags = [t["display_name"] for t in tasks if t["kind"] == "dag"]
    assert {"exit-handler-1", "inner", "inner-2"} <= set(dags)
    assert any("for-loop" in d for d in dags) and any("condition" in d for d in dags)
    assert sum("iteration" in d for d in dags) == 2  # each loop iteration is a DAG of its own
    executors = [t for t in tasks if t["kind"] != "dag"]
    assert len({t["pod_name"] for t in executors}) == len(executors)
    for t in executors:
        assert t["state_history"] and t["executor_detail"]["main_job"]
    leaves = [t for t in executors if t["display_name"] == "leaf"
              and by_id[t["parent_task_id"]]["display_name"] in ("inner", "inner-2")]
    assert len(leaves) == 2  # one "leaf" in each sub-DAG
    logs = {t["input_parameters"]["x"]: httpx.get(f"{server.url}/apis/v2beta1/runs/{run_id}/tasks/{t['task_id']}/logs",
                                                  timeout=30).text for t in leaves}
    assert "leaf got 1" in logs[1] and "leaf got 10" not in logs[1]
    assert "leaf got 10" in logs[10]
    assert {t["input_parameters"]["x"]: t["parameters"]["Output"] for t in leaves} == {1: 2, 10: 11}
    failed = next(t for t in executors if t["display_name"] == "fail-on-purpose")
    assert failed["state"] == "FAILED" and "planned failure" in failed["error"]["message"]
    exit_task = next(t for t in executors if t["display_name"] == "report")
    assert exit_task["state"] == "SUCCEEDED" and exit_task["parameters"]["Output"] == "FAILED"
