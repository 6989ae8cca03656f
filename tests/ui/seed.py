"""Seeding the dashboard's tests: real runs through the KFP API, models through the registry API,
and (for size tests) rows written straight into the server's database, as a long-lived install has.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from kfp import compiler

from tests.pipelines import sample_pipelines as samples
from tests.support import ServerProcess
from tests.ui.specs import wide_spec as wide_spec  # re-exported: the tests that seed a server import it from here

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


def add_task_rows(server: ServerProcess, run_id: str, tasks: int) -> None:
    """Record tasks for a run as an engine would (mixed states), straight into the server's database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{server.home / 'kfbox.db'}")
    now = int(time.time() * 1000)
    states = ["SUCCEEDED", "SUCCEEDED", "RUNNING", "FAILED", "SUCCEEDED"]
    rows = [{"id": str(uuid.uuid4()), "run_id": run_id, "name": f"step-{i}", "path": f"step-{i}",
             "state": states[i % len(states)], "ms": now} for i in range(tasks)]
    with engine.begin() as conn:  # a write to the run's tasks takes its next change number, as the run store's do
        conn.execute(text("UPDATE pipelines_runs SET task_seq = task_seq + 1 WHERE id = :run_id"), {"run_id": run_id})
        conn.execute(text("INSERT INTO pipelines_tasks (id, run_id, parent_id, name, path, kind, state, cache_hit,"
                          " parameters, created_ms, started_ms, seq) VALUES (:id, :run_id, NULL, :name, :path,"
                          " 'container', :state, 0, '{}', :ms, :ms,"
                          " (SELECT task_seq FROM pipelines_runs WHERE id = :run_id))"), rows)
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


@dataclasses.dataclass
class SeededDashboard:
    """The ``kfbox up`` that tests/ui/conftest.py shares between the dashboard's page modules, and what it holds."""

    server: ServerProcess
    seeded: dict[str, Any]
    """Ids: good and small (acceptance runs that succeeded), bad (a failing run), kinds (every artifact kind),
    wide (600 tasks), model and v1 (a registered model, description a <script>), pipeline (uploaded),
    experiment (bad's); spec_folder holds the compiled specs."""


def seed_dashboard(server: ServerProcess, folder: Path) -> dict[str, Any]:
    """What tests/ui/conftest.py's shared server holds: see :class:`SeededDashboard`."""
    with server.client() as http:
        good = submit(http, compiled("acceptance", folder), "accept <b>me</b>")
        # its own model name: two runs registering one name and version would race for it
        small = submit(http, compiled("acceptance", folder), "small one", items=[1], threshold=0,
                       model_name="small-model")
        bad = submit(http, compiled("failing", folder), "failing run")
        kinds = submit(http, compiled("artifact_kinds", folder), "artifact kinds")
        wide = submit(http, wide_spec(600), "wide run")
        add_task_rows(server, wide, 600)
        upload = http.post("/apis/v2beta1/pipelines/upload", params={"name": "audited pipeline"},
                           files={"uploadfile": ("failing.yaml", (folder / "failing.yaml").read_bytes())})
        assert upload.status_code == 200, upload.text
        ids = register_model(http, "demo", "file:///nonexistent/model", description=SCRIPT, versions=("v1", "v2"),
                             metrics={"accuracy": 0.9})
        for run in (good, bad, small, kinds):
            body = wait_run(http, run)
            assert body["state"] == ("FAILED" if run == bad else "SUCCEEDED"), (body["display_name"], body["error"])
        experiment = http.get(f"/apis/v2beta1/runs/{bad}").json()["experiment_id"]
    return {"good": good, "small": small, "bad": bad, "kinds": kinds, "wide": wide, "model": ids["model"],
            "v1": ids["v1"], "pipeline": upload.json()["pipeline_id"], "experiment": experiment,
            "spec_folder": folder}
