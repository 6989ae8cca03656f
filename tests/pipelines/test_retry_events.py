"""A retried run's worker may write events before the supervisor starts reading them: none may be lost.

The supervisor reads a retried run's events from where the first attempt's ended. A warm worker
starts the retried task at once, so it can append ``task_started`` before the supervisor takes
that offset; taken after the spawn, the offset skipped the event and the task vanished from the
run (it SUCCEEDED without the retried task). Here the worker's spawn returns only once the worker
has finished: the extreme of what a loaded machine's scheduling produces at random.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from kfbox.pipelines.supervisor import Supervisor
from kfbox.server.processes import ChildProcess


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    from kfbox.config import Settings
    from kfbox.db import Database
    from kfbox.server.app import create_app
    from kfbox.server.platform import Platform

    (tmp_path / "home").mkdir()
    settings = Settings.load(home=tmp_path / "home", port=0, pipelines_spare_worker=False,
                             serving_warm_standby=False)
    db = Database(settings.db_url)
    db.upgrade()
    app = create_app(settings, Platform(settings=settings, db=db))
    try:
        with TestClient(app, base_url="http://127.0.0.1") as test_client:
            yield test_client
    finally:
        db.dispose()


def _spawn_after_first_event(monkeypatch: pytest.MonkeyPatch) -> None:
    spawn = Supervisor._spawn_worker

    def spawn_then_wait(self: Supervisor, run_dir: Path) -> ChildProcess:
        child = spawn(self, run_dir)
        deadline = time.monotonic() + 60
        while child.alive and time.monotonic() < deadline:  # the worst case: the whole run went by
            time.sleep(0.02)
        return child

    monkeypatch.setattr(Supervisor, "_spawn_worker", spawn_then_wait)


def _wait(client: TestClient, run_id: str, states: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/apis/v2beta1/runs/{run_id}").json()
        if body["state"] in states:
            return body
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still {body['state']}")


def test_a_retried_task_shows_even_when_the_worker_writes_before_the_supervisor_reads(
        client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kfp import compiler

    from kfbox.pipelines.spec import parse_package
    from tests.pipelines.sample_pipelines import flaky

    _spawn_after_first_event(monkeypatch)
    package = tmp_path / "flaky.yaml"
    compiler.Compiler().compile(flaky, str(package))
    flag = tmp_path / "flag"
    created = client.post("/apis/v2beta1/runs", json={
        "display_name": "flaky", "pipeline_spec": parse_package(package.read_bytes()),
        "runtime_config": {"parameters": {"flag": str(flag)}}}).json()
    run_id = created["run_id"]
    assert _wait(client, run_id, ("FAILED", "SUCCEEDED"))["state"] == "FAILED"
    flag.write_text("")
    assert client.post(f"/apis/v2beta1/runs/{run_id}:retry").status_code == 200
    body = _wait(client, run_id, ("SUCCEEDED", "FAILED"))
    assert body["state"] == "SUCCEEDED", body.get("error")
    tasks = {t["display_name"]: t for t in body["run_details"]["task_details"]}
    assert tasks["needs-flag"]["state"] == "SUCCEEDED"
    assert tasks["say"]["state"] == "SUCCEEDED"
