"""The KFP v2beta1 API through the upstream kfp.Client: catalogue, runs, listing, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import kfp_server_api
import pytest
from kfp import Client, compiler

from tests.pipelines import sample_pipelines as samples
from tests.pipelines.conftest import wait_run
from tests.support import ServerProcess


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server  # the package's server (tests/pipelines/conftest.py)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("packages")
    out = {}
    for name in ("failing", "containerised", "typed"):
        out[name] = folder / f"{name}.yaml"
        compiler.Compiler().compile(getattr(samples, name), str(out[name]))
    return out


def test_healthz_and_error_shape(server: ServerProcess, kfp_client: Client) -> None:
    assert kfp_client.get_kfp_healthz().multi_user is False
    missing = httpx.get(f"{server.url}/pipeline/apis/v2beta1/runs/nope")
    assert missing.status_code == 404
    body = missing.json()
    assert set(body) == {"error", "code", "message", "details"} and body["code"] == 5
    assert "nope" in body["message"]


def test_experiments(kfp_client: Client) -> None:
    created = kfp_client.create_experiment("exp-api", description="about")
    assert kfp_client.create_experiment("exp-api").experiment_id == created.experiment_id  # get-or-create
    assert kfp_client.get_experiment(experiment_name="exp-api").description == "about"
    listed = kfp_client.list_experiments(page_size=100)
    assert "exp-api" in [e.display_name for e in listed.experiments]
    kfp_client.archive_experiment(created.experiment_id)
    assert kfp_client.get_experiment(created.experiment_id).storage_state == "ARCHIVED"
    kfp_client.delete_experiment(created.experiment_id)
    with pytest.raises(kfp_server_api.ApiException) as exc:
        kfp_client.get_experiment(created.experiment_id)
    assert exc.value.status == 404


def test_upload_pipeline_and_run_a_version(server: ServerProcess, kfp_client: Client,
                                           packages: dict[str, Path]) -> None:
    pipeline = kfp_client.upload_pipeline(str(packages["failing"]), pipeline_name="uploaded")
    assert kfp_client.get_pipeline_id("uploaded") == pipeline.pipeline_id
    versions = kfp_client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    assert len(versions) == 1 and versions[0].pipeline_spec["pipelineInfo"]["name"] == "failing"
    second = kfp_client.upload_pipeline_version(str(packages["failing"]), pipeline_version_name="v2",
                                                pipeline_id=pipeline.pipeline_id)
    with pytest.raises(kfp_server_api.ApiException) as exc:
        kfp_client.upload_pipeline(str(packages["failing"]), pipeline_name="uploaded")
    assert exc.value.status == 409
    experiment = kfp_client.create_experiment("versions")
    run = kfp_client.run_pipeline(experiment.experiment_id, "from-version", pipeline_id=pipeline.pipeline_id,
                                  version_id=second.pipeline_version_id, params={"message": "v2"})
    body = wait_run(server, run.run_id)
    assert body["pipeline_version_reference"]["pipeline_version_id"] == second.pipeline_version_id
    assert body["state"] == "FAILED" and "boom: v2" in body["error"]["message"]
    kfp_client.delete_pipeline_version(pipeline.pipeline_id, second.pipeline_version_id)
    kfp_client.delete_pipeline(pipeline.pipeline_id)
    assert kfp_client.get_pipeline_id("uploaded") is None


@pytest.mark.parametrize(("arguments", "message"), [
    ({"count": 1, "colour": "red"}, "has no parameter 'colour'"),
    ({"ratio": 0.1}, "needs parameter 'count'"),
    ({"count": "three"}, "'count' of pipeline 'typed' must be an integer"),
    ({"count": 1, "flag": "yes"}, "'flag' of pipeline 'typed' must be a boolean"),
])
def test_bad_parameters_are_rejected_before_anything_runs(kfp_client: Client, packages: dict[str, Path],
                                                          arguments: dict, message: str) -> None:
    before = kfp_client.list_runs(page_size=1000).total_size or 0
    with pytest.raises(kfp_server_api.ApiException) as exc:
        kfp_client.create_run_from_pipeline_package(str(packages["typed"]), arguments=arguments)
    assert exc.value.status == 400
    assert message in json.loads(exc.value.body)["message"]
    assert (kfp_client.list_runs(page_size=1000).total_size or 0) == before


def test_container_component_fails_before_it_starts(kfp_client: Client, packages: dict[str, Path]) -> None:
    result = kfp_client.create_run_from_pipeline_package(str(packages["containerised"]))
    run = kfp_client.get_run(result.run_id)
    assert run.state == "FAILED"
    assert "container component (image 'alpine:3') needs a container runtime" in run.error.message
    assert not run.run_details.task_details


@pytest.fixture(scope="module")
def listed_runs(kfp_client: Client, packages: dict[str, Path]) -> Iterator[tuple[str, list[str]]]:
    """Five runs that fail at once (container components): cheap rows to page through."""
    experiment = kfp_client.create_experiment("listing").experiment_id
    ids = [kfp_client.run_pipeline(experiment, f"list-{i}", str(packages["containerised"])).run_id
           for i in range(5)]
    yield experiment, ids


def test_list_runs_pages_sorts_and_filters(kfp_client: Client, listed_runs: tuple[str, list[str]]) -> None:
    experiment, ids = listed_runs
    first = kfp_client.list_runs(experiment_id=experiment, page_size=2, sort_by="created_at desc")
    assert first.total_size == 5 and [r.run_id for r in first.runs] == ids[::-1][:2]
    second = kfp_client.list_runs(experiment_id=experiment, page_size=2, sort_by="created_at desc",
                                  page_token=first.next_page_token)
    third = kfp_client.list_runs(experiment_id=experiment, page_size=2, sort_by="created_at desc",
                                 page_token=second.next_page_token)
    assert [r.run_id for r in second.runs + third.runs] == ids[::-1][2:] and not third.next_page_token
    by_name = kfp_client.list_runs(experiment_id=experiment, sort_by="name")
    assert [r.display_name for r in by_name.runs] == [f"list-{i}" for i in range(5)]
    flt = json.dumps({"predicates": [{"key": "display_name", "operation": "IN",
                                      "string_values": {"values": ["list-1", "list-3"]}}]})
    assert {r.display_name for r in kfp_client.list_runs(filter=flt).runs} == {"list-1", "list-3"}
    flt = json.dumps({"predicates": [{"key": "state", "operation": "EQUALS", "string_value": "FAILED"},
                                     {"key": "name", "operation": "IS_SUBSTRING", "string_value": "list-4"}]})
    assert [r.run_id for r in kfp_client.list_runs(filter=flt).runs] == [ids[4]]
    with pytest.raises(kfp_server_api.ApiException) as exc:
        kfp_client.list_runs(filter=json.dumps({"predicates": [{"key": "colour", "string_value": "x"}]}))
    assert exc.value.status == 400 and "Cannot filter on 'colour'" in json.loads(exc.value.body)["message"]


def test_archive_and_delete_runs(kfp_client: Client, listed_runs: tuple[str, list[str]]) -> None:
    _, ids = listed_runs
    kfp_client.archive_run(ids[0])
    assert kfp_client.get_run(ids[0]).storage_state == "ARCHIVED"
    kfp_client.unarchive_run(ids[0])
    assert kfp_client.get_run(ids[0]).storage_state == "AVAILABLE"
    kfp_client.delete_run(ids[1])
    with pytest.raises(kfp_server_api.ApiException) as exc:
        kfp_client.get_run(ids[1])
    assert exc.value.status == 404
