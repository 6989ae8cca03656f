"""Compare runs draws each metric as a chart: a history over the logging steps when a run logged the
metric several times (one metrics artifact per epoch), else one point per run with the best ringed.
In-process (``app_client``), runs written into the store as the engine records them."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from kfbox.pipelines.tables import Artifact, Experiment, Run

pytestmark = pytest.mark.inprocess

SMALL = {"pipelineInfo": {"name": "charted"}, "root": {"dag": {"tasks": {}}}, "components": {},
         "deploymentSpec": {"executors": {}}}


def record(client: TestClient, name: str, logged: list[dict[str, Any]]) -> str:
    """A finished run named ``name`` with one system.Metrics artifact per entry of ``logged``."""
    db = client.app.state.platform.db  # type: ignore[attr-defined]
    now = int(time.time() * 1000)
    run_id, experiment = str(uuid.uuid4()), str(uuid.uuid4())
    with db.write() as s:
        s.execute(insert(Experiment), [{"id": experiment, "display_name": f"exp-{run_id[:8]}", "description": "",
                                        "namespace": "", "storage_state": "AVAILABLE", "created_ms": now,
                                        "last_run_ms": now}])
        s.execute(insert(Run), [{"id": run_id, "experiment_id": experiment, "display_name": name, "description": "",
                                 "pipeline_spec": SMALL, "parameters": {}, "pipeline_root": "",
                                 "service_account": "", "storage_state": "AVAILABLE", "state": "SUCCEEDED",
                                 "state_history": [], "created_ms": now, "scheduled_ms": now,
                                 "finished_ms": now + 1000}])
        s.execute(insert(Artifact), [{"run_id": run_id, "task_id": f"epoch-{i}", "direction": "output",
                                      "key": "metrics", "name": "metrics", "uri": "", "schema_title": "system.Metrics",
                                      "artifact_metadata": m, "created_ms": now + i} for i, m in enumerate(logged)])
    return run_id


def test_metric_history_is_a_chart_per_metric(app_client: TestClient) -> None:
    a = record(app_client, "three epochs", [{"loss": 0.9, "accuracy": 0.61}, {"loss": 0.5}, {"loss": 0.3}])
    b = record(app_client, "two epochs", [{"loss": 0.8, "accuracy": 0.74}, {"loss": 0.6}])
    c = record(app_client, "one shot", [{"accuracy": 0.7}])
    body = app_client.get("/compare.json", params={"runs": [a, b, c]}).json()
    charts = {ch["metric"]: ch for ch in body["charts"]}
    loss = charts["loss"]
    assert loss["kind"] == "history"
    assert [(line["run"], line["points"]) for line in loss["lines"]] == [
        ("three epochs", [[1, 0.9], [2, 0.5], [3, 0.3]]), ("two epochs", [[1, 0.8], [2, 0.6]])]
    accuracy = charts["accuracy"]
    assert accuracy["kind"] == "runs" and accuracy["lines"][0]["points"] == [[1, 0.61], [2, 0.74], [3, 0.7]]
    assert accuracy["best"] == 1
    # the table shows each run's last value: the loss it ended with
    assert next(r for r in body["metrics"] if r["name"] == "loss")["cells"] == [0.3, 0.6, None]

    html = app_client.get("/compare", params={"runs": [a, b, c]}).text
    svg = re.search(r'<svg class="chart metric-chart"[^>]*data-metric="loss" data-kind="history">.*?</svg>', html)
    assert svg and svg.group(0).count("<polyline") == 2 and svg.group(0).count("<circle") == 5
    assert "<title>three epochs step 3: 0.3</title>" in svg.group(0)
    ringed = re.search(r'data-metric="accuracy" data-kind="runs">.*?</svg>', html)
    assert ringed and '<circle' in ringed.group(0)
    assert re.search(r'class="best"><title>two epochs: 0\.74 \(best\)</title>', ringed.group(0))
    assert "<script" not in svg.group(0)


def test_run_names_in_charts_are_text(app_client: TestClient) -> None:
    a = record(app_client, "<script>alert(1)</script>", [{"f1": 0.2}, {"f1": 0.4}])
    b = record(app_client, "plain", [{"f1": 0.3}])
    html = app_client.get("/compare", params={"runs": [a, b]}).text
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; step 2: 0.4" in html


def test_legend_tells_runs_apart_whose_names_differ_at_the_end(app_client: TestClient) -> None:
    """Run names cut to 14 characters at the end both read "iris-training-": the legend cuts in the middle, and
    the full name is the label's tooltip."""
    a = record(app_client, "iris-training-v1", [{"loss": 0.9}, {"loss": 0.5}])
    b = record(app_client, "iris-training-v2", [{"loss": 0.8}, {"loss": 0.4}])
    html = app_client.get("/compare", params={"runs": [a, b]}).text
    svg = re.search(r'data-metric="loss" data-kind="history">.*?</svg>', html)
    assert svg
    legend = re.findall(r'<text x="[0-9.]+" y="[0-9.]+">([^<]+)<title>([^<]+)</title></text>', svg.group(0))
    assert legend == [("iris-tr\u2026ing-v1", "iris-training-v1"), ("iris-tr\u2026ing-v2", "iris-training-v2")]
