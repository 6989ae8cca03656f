"""The run page's graph and live states, in-process (``app_client``) over runs written straight into
the store as an engine records them: open groups drawn as boxes, a graph too big to draw becoming a
status table, and polls that carry only what changed."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, update

from kfbox.pipelines.tables import Experiment, Run, Task
from tests.ui.specs import wide_spec

pytestmark = pytest.mark.inprocess


def record_run(client: TestClient, spec: dict[str, Any], tasks: dict[str, str], state: str = "RUNNING") -> str:
    """A run of ``spec`` with record tasks ``{path: state}``, written into the app's own database."""
    db = client.app.state.platform.db  # type: ignore[attr-defined]
    now = int(time.time() * 1000)
    run_id, experiment = str(uuid.uuid4()), str(uuid.uuid4())
    with db.write() as s:
        s.execute(insert(Experiment), [{"id": experiment, "display_name": f"exp-{run_id[:6]}", "description": "",
                                        "namespace": "", "storage_state": "AVAILABLE", "created_ms": now,
                                        "last_run_ms": now}])
        s.execute(insert(Run), [{"id": run_id, "experiment_id": experiment, "display_name": "recorded",
                                 "description": "", "pipeline_spec": spec, "parameters": {}, "pipeline_root": "",
                                 "service_account": "", "storage_state": "AVAILABLE", "state": state,
                                 "state_history": [], "created_ms": now, "scheduled_ms": now}])
        s.execute(insert(Task), [{"id": str(uuid.uuid4()), "run_id": run_id, "parent_id": None,
                                  "name": path.rsplit("/", 1)[-1], "path": path, "kind": "container", "state": st,
                                  "cache_hit": False, "parameters": {}, "log_path": None, "created_ms": now + i,
                                  "started_ms": now} for i, (path, st) in enumerate(tasks.items())])
    return run_id


def set_task_state(client: TestClient, run_id: str, path: str, state: str) -> None:
    db = client.app.state.platform.db  # type: ignore[attr-defined]
    with db.write() as s:
        s.execute(update(Task).where(Task.run_id == run_id, Task.path == path).values(state=state))


@pytest.fixture(scope="module")
def wide_run(app_client: TestClient) -> str:
    tasks = {f"step-{i}": "RUNNING" for i in range(600)}
    tasks["for-loop-1/for-loop-1-iteration-0/inner"] = "SUCCEEDED"
    tasks["for-loop-1/for-loop-1-iteration-1/inner"] = "FAILED"
    return record_run(app_client, wide_spec(600), tasks)


def test_a_poll_carries_only_the_tasks_that_changed(app_client: TestClient, wide_run: str) -> None:
    page = app_client.get(f"/runs/{wide_run}.json").json()
    assert len(page["tasks"]) == 602 and page["version"]
    quiet = app_client.get(f"/runs/{wide_run}/states.json", params={"since": page["version"]}).json()
    assert quiet["nodes"] == {} and quiet["tasks"] == [] and not quiet["reset"]
    assert quiet["version"] == page["version"] and quiet["run"] == {"state": "RUNNING", "final": False}

    set_task_state(app_client, wide_run, "step-7", "SUCCEEDED")
    moved = app_client.get(f"/runs/{wide_run}/states.json", params={"since": page["version"]}).json()
    assert moved["nodes"] == {"step-7": "SUCCEEDED"}
    assert [(t["path"], t["state"]) for t in moved["tasks"]] == [("step-7", "SUCCEEDED")]
    assert moved["version"] != page["version"]
    after = app_client.get(f"/runs/{wide_run}/states.json", params={"since": moved["version"]}).json()
    assert after["tasks"] == [] and after["nodes"] == {}

    # a version the server never sent (or has forgotten): everything again, flagged as a reset
    lost = app_client.get(f"/runs/{wide_run}/states.json", params={"since": "0000"}).json()
    assert lost["reset"] and len(lost["tasks"]) == 602 and lost["nodes"]["step-7"] == "SUCCEEDED"
    assert app_client.get(f"/runs/{uuid.uuid4()}/states.json").status_code == 404


def test_an_open_group_is_a_labelled_box_around_its_tasks(app_client: TestClient, wide_run: str) -> None:
    closed = app_client.get(f"/runs/{wide_run}.json").json()["graph"]
    assert closed["boxes"] == [] and {n["id"]: n for n in closed["nodes"]}["for-loop-1"]["state"] == "FAILED"
    graph = app_client.get(f"/runs/{wide_run}.json", params={"open": "for-loop-1"}).json()["graph"]
    [box] = graph["boxes"]
    assert (box["id"], box["kind"], box["state"], box["count"]) == ("for-loop-1", "loop", "FAILED", 2)
    nodes = {n["id"]: n for n in graph["nodes"]}
    inner = nodes.pop("for-loop-1/inner")
    assert box["x"] < inner["x"] and inner["x"] + 190 < box["x"] + box["w"]
    assert box["y"] < inner["y"] and inner["y"] + 38 < box["y"] + box["h"]
    for n in nodes.values():  # nothing else is drawn over the box
        apart = (n["x"] + 190 <= box["x"] or n["x"] >= box["x"] + box["w"]
                 or n["y"] + 38 <= box["y"] or n["y"] >= box["y"] + box["h"])
        assert apart, n["id"]
    assert ["step-599", "for-loop-1"] in graph["edges"]  # the edge into the group meets the box

    html = app_client.get(f"/runs/{wide_run}", params={"open": "for-loop-1"}).text
    assert re.search(r'<g class="box kind-loop" data-node="for-loop-1" data-state="FAILED"><rect ', html)
    assert 'href="?open=" aria-label="for-loop-1 (loop): failed (close group)"' in html


def test_a_graph_too_big_to_draw_becomes_the_status_table(app_client: TestClient) -> None:
    run_id = record_run(app_client, wide_spec(1600, width=40), {"step-0": "FAILED", "step-1": "RUNNING"})
    body = app_client.get(f"/runs/{run_id}.json").json()
    assert body["graph"] is None and body["node_count"] == 1604
    html = app_client.get(f"/runs/{run_id}").text
    assert "more than a graph can show" in html and 'id="dag"' not in html
    assert re.search(r'<tr data-task="[^"]+"><td><a href="\?task=step-0">step-0</a></td><td data-cell="state">'
                     r'<span class="state state-failed">FAILED</span>', html)
