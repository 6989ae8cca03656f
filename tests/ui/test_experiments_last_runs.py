"""The experiments page's "last 5 runs": one query for the whole page, right on every database backend."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, insert

from kfbox.db import Database
from kfbox.pipelines.tables import Experiment, Run
from kfbox.ui.experiments import last_runs

SPEC = {"pipelineInfo": {"name": "recent"}, "root": {"dag": {"tasks": {}}}, "components": {},
        "deploymentSpec": {"executors": {}}}


def seed(db: Database, runs_per_experiment: list[int]) -> tuple[list[str], dict[str, list[str]]]:
    """Experiments with that many runs each, created interleaved; returns (experiment ids, each one's
    run ids newest first)."""
    now = int(time.time() * 1000)
    experiments = [str(uuid.uuid4()) for _ in runs_per_experiment]
    newest: dict[str, list[str]] = {e: [] for e in experiments}
    rows: list[dict[str, object]] = []
    for step in range(max(runs_per_experiment)):
        for e, count in zip(experiments, runs_per_experiment, strict=True):
            if step < count:
                run_id = str(uuid.uuid4())
                newest[e].insert(0, run_id)
                rows.append({"id": run_id, "experiment_id": e, "display_name": f"r{step}", "description": "",
                             "pipeline_spec": SPEC, "parameters": {}, "pipeline_root": "", "service_account": "",
                             "storage_state": "AVAILABLE", "state": "SUCCEEDED", "state_history": [],
                             "created_ms": now + len(rows), "scheduled_ms": now})
    with db.write() as s:
        s.execute(insert(Experiment), [{"id": e, "display_name": f"recent-{e[:8]}", "description": "", "namespace": "",
                                        "storage_state": "AVAILABLE", "created_ms": now} for e in experiments])
        s.execute(insert(Run), rows)
    return experiments, newest


def test_each_experiment_gets_its_five_newest_runs_in_one_query(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.upgrade()
        experiments, newest = seed(db, [12, 0, 3, 40])
        queries: list[str] = []
        event.listen(db.engine, "before_cursor_execute", lambda *a: queries.append(a[2]))
        with db.read() as s:
            found = last_runs(s, experiments)
        assert len([q for q in queries if "pipelines_runs" in q]) == 1
        for e in experiments:
            assert [r["run_id"] for r in found[e]] == newest[e][:5]
        assert found[experiments[1]] == [] and len(found[experiments[2]]) == 3
        assert set(found[experiments[0]][0]) == {"run_id", "display_name", "state", "experiment_id", "created_ms"}
    finally:
        db.dispose()


@pytest.mark.inprocess
def test_the_page_links_each_experiments_last_runs(app_client: TestClient) -> None:
    db = app_client.app.state.platform.db  # type: ignore[attr-defined]
    experiments, newest = seed(db, [7, 2])
    body = app_client.get("/experiments.json", params={"page_size": 500}).json()
    shown = {e["experiment_id"]: [r["run_id"] for r in e["recent_runs"]] for e in body["experiments"]}
    assert shown[experiments[0]] == newest[experiments[0]][:5] and shown[experiments[1]] == newest[experiments[1]]
    html = app_client.get("/experiments", params={"page_size": 500}).text
    assert all(f'href="/runs/{r}"' in html for r in newest[experiments[0]][:5])
    assert f'href="/runs/{newest[experiments[0]][5]}"' not in html
