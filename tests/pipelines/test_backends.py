"""The pipelines tables and queries on every metadata backend: SQLite, PostgreSQL, MySQL/MariaDB."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from kfp import compiler

from kfbox.pipelines.spec import parse_package
from tests.pipelines import sample_pipelines as samples
from tests.pipelines.conftest import tasks_by_path, wait_run
from tests.support import ServerProcess


def test_run_history_on_each_backend(database_url: str, tmp_path: Path) -> None:
    package = tmp_path / "failing.yaml"
    compiler.Compiler().compile(samples.failing, str(package))
    spec = parse_package(package.read_bytes())
    server = ServerProcess.start(tmp_path / "home", db=database_url)
    try:
        api = f"{server.url}/apis/v2beta1"
        experiment = httpx.post(f"{api}/experiments", json={"display_name": "backends"}).json()["experiment_id"]
        duplicate = httpx.post(f"{api}/experiments", json={"display_name": "backends"})
        assert duplicate.status_code == 409
        run = httpx.post(f"{api}/runs", json={"display_name": "on-backend", "experiment_id": experiment,
                                              "pipeline_spec": spec,
                                              "runtime_config": {"parameters": {"message": "db"}}}).json()
        body = wait_run(server, run["run_id"])
        assert body["state"] == "FAILED" and "ValueError: boom: db" in body["error"]["message"]
        assert tasks_by_path(body)["explode"]["state"] == "FAILED"
        flt = json.dumps({"predicates": [{"key": "state", "operation": "EQUALS", "string_value": "FAILED"}]})
        listed = httpx.get(f"{api}/runs", params={"filter": flt, "experiment_id": experiment}).json()
        assert [r["run_id"] for r in listed["runs"]] == [run["run_id"]] and listed["total_size"] == 1
    finally:
        server.stop()
