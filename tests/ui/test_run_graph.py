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
from sqlalchemy import event, insert, select

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
    """A task ends, written as the engine writes it: a worker event applied by the run store."""
    platform = client.app.state.platform  # type: ignore[attr-defined]
    with platform.db.read() as s:
        task_id = s.scalar(select(Task.id).where(Task.run_id == run_id, Task.path == path))
    platform.services.pipelines.runs.apply(run_id, {"event": "task_finished", "task_id": task_id,
                                                       "state": state, "ms": int(time.time() * 1000)})


def start_task(client: TestClient, run_id: str, path: str) -> None:
    platform = client.app.state.platform  # type: ignore[attr-defined]
    platform.services.pipelines.runs.apply(run_id, {"event": "task_started", "task_id": str(uuid.uuid4()),
                                                       "name": path.rsplit("/", 1)[-1], "path": path,
                                                       "ms": int(time.time() * 1000) + 10_000})


class Statements:
    """The SQL the app's engine runs while the block runs (to see what a request reads)."""

    def __init__(self, client: TestClient) -> None:
        self.engine = client.app.state.platform.db.engine  # type: ignore[attr-defined]
        self.seen: list[str] = []

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.seen.append(statement)

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def task_reads(self) -> list[str]:
        """Reads of one run's tasks (the platform's own samplers read tasks too, from other threads)."""
        return [q for q in self.seen if "FROM pipelines_tasks" in q and "pipelines_tasks.run_id =" in q]


def record_wide_run(client: TestClient) -> str:
    tasks = {f"step-{i}": "RUNNING" for i in range(600)}
    tasks["for-loop-1/for-loop-1-iteration-0/inner"] = "SUCCEEDED"
    tasks["for-loop-1/for-loop-1-iteration-1/inner"] = "FAILED"
    return record_run(client, wide_spec(600), tasks)


@pytest.fixture(scope="module")
def wide_run(app_client: TestClient) -> str:
    return record_wide_run(app_client)


def test_a_poll_carries_only_the_tasks_that_changed(app_client: TestClient) -> None:
    wide_run = record_wide_run(app_client)
    page = app_client.get(f"/runs/{wide_run}.json").json()
    assert len(page["tasks"]) == 602 and page["version"]
    with Statements(app_client) as sql:
        quiet = app_client.get(f"/runs/{wide_run}/states.json", params={"since": page["version"]}).json()
    assert quiet["nodes"] == {} and quiet["tasks"] == [] and not quiet["reset"]
    assert quiet["version"] == page["version"] and quiet["run"] == {"state": "RUNNING", "final": False}
    assert sql.task_reads() == []  # nothing moved: the run's row says so, no task is read

    set_task_state(app_client, wide_run, "step-7", "SUCCEEDED")
    with Statements(app_client) as sql:
        moved = app_client.get(f"/runs/{wide_run}/states.json", params={"since": page["version"]}).json()
    assert moved["nodes"] == {"step-7": "SUCCEEDED"}
    assert [(t["path"], t["state"]) for t in moved["tasks"]] == [("step-7", "SUCCEEDED")]
    assert moved["version"] != page["version"]
    [read] = sql.task_reads()  # only the tasks written since, by their change number
    assert "pipelines_tasks.seq >" in read
    after = app_client.get(f"/runs/{wide_run}/states.json", params={"since": moved["version"]}).json()
    assert after["tasks"] == [] and after["nodes"] == {}

    # a loop iteration starts: its node and the loop around it are sent (the loop shows its worst state)
    start_task(app_client, wide_run, "for-loop-1/for-loop-1-iteration-2/inner")
    inner = app_client.get(f"/runs/{wide_run}/states.json", params={"since": moved["version"]}).json()
    assert inner["nodes"] == {"for-loop-1": "FAILED"}
    assert [(t["path"], t["state"]) for t in inner["tasks"]] == [("for-loop-1/for-loop-1-iteration-2/inner", "RUNNING")]
    opened = app_client.get(f"/runs/{wide_run}/states.json",
                            params={"since": moved["version"], "open": "for-loop-1"}).json()
    assert opened["nodes"] == {"for-loop-1": "FAILED", "for-loop-1/inner": "FAILED"}
    # a task that appears comes in the next poll (the page reloads to draw its row)
    start_task(app_client, wide_run, "step-600")
    new = app_client.get(f"/runs/{wide_run}/states.json", params={"since": inner["version"]}).json()
    assert [(t["path"], t["state"]) for t in new["tasks"]] == [("step-600", "RUNNING")]
    assert app_client.get(f"/runs/{wide_run}.json").json()["tasks"][-1]["path"] == "step-600"
    # a page from two changes ago gets both
    both = app_client.get(f"/runs/{wide_run}/states.json", params={"since": moved["version"]}).json()
    assert {t["path"] for t in both["tasks"]} == {"for-loop-1/for-loop-1-iteration-2/inner", "step-600"}

    # a version the server never sent (or has forgotten): everything again, flagged as a reset
    lost = app_client.get(f"/runs/{wide_run}/states.json", params={"since": "0000"}).json()
    assert lost["reset"] and len(lost["tasks"]) == 604 and lost["nodes"]["step-7"] == "SUCCEEDED"
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
