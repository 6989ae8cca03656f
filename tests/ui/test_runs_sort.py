"""Sorting the runs list on a metric column sorts every run in the store, not one page of it:
the page in-process (``app_client``), the SQL on each database backend."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, literal, select

from kfbox.db import Database
from kfbox.pipelines.tables import Artifact, Experiment, Run
from kfbox.ui.runs import NO_VALUE, metric_value

SMALL = {"pipelineInfo": {"name": "sorted"}, "root": {"dag": {"tasks": {}}}, "components": {},
         "deploymentSpec": {"executors": {}}}


def seed(db: Database, values: list[Any], prefix: str) -> list[str]:
    """One run per value, named ``prefix-i``, each with a metrics artifact holding ``accuracy: value``
    (None: a metrics artifact without it); run ``i`` is created later than run ``i - 1``."""
    now = int(time.time() * 1000)
    experiment = str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in values]
    with db.write() as s:
        s.execute(insert(Experiment), [{"id": experiment, "display_name": f"{prefix}-exp", "description": "",
                                        "namespace": "", "storage_state": "AVAILABLE", "created_ms": now,
                                        "last_run_ms": now}])
        s.execute(insert(Run), [{"id": r, "experiment_id": experiment, "display_name": f"{prefix}-{i}",
                                 "description": "", "pipeline_spec": SMALL, "parameters": {}, "pipeline_root": "",
                                 "service_account": "", "storage_state": "AVAILABLE", "state": "SUCCEEDED",
                                 "state_history": [], "created_ms": now + i, "scheduled_ms": now + i,
                                 "finished_ms": now + i + 10} for i, r in enumerate(ids)])
        s.execute(insert(Artifact), [{"run_id": r, "task_id": "t", "direction": "output", "key": "metrics",
                                      "name": "metrics", "uri": "", "schema_title": "system.Metrics",
                                      "artifact_metadata": {} if v is None else {"accuracy": v, "loss": 1},
                                      "created_ms": now} for r, v in zip(ids, values, strict=True)])
    return ids


def test_metric_sort_spans_every_page(app_client: TestClient) -> None:
    db = app_client.app.state.platform.db  # type: ignore[attr-defined]
    # values that page-local sorting gets wrong: the best runs are the oldest, off the first page by date
    values: list[Any] = [(i * 37 % 101) / 100 for i in range(120)] + [None, "n/a"]
    seed(db, values, "sorted")
    pages, token = [], ""
    while True:
        body = app_client.get("/runs.json", params={"q": "sorted-", "sort": "metric:accuracy", "order": "desc",
                                                    "page_size": 50, "page_token": token}).json()
        pages.append(body["runs"])
        token = body["next_page_token"]
        if not token:
            break
    assert [len(p) for p in pages] == [50, 50, 22]
    shown = [r["metrics"].get("accuracy") for p in pages for r in p]
    numbers = sorted((v for v in values if isinstance(v, float)), reverse=True)
    assert shown[:120] == numbers and shown[120:] == [None, None]  # without a number: last
    ascending = app_client.get("/runs.json", params={"q": "sorted-", "sort": "metric:accuracy", "order": "asc",
                                                     "page_size": 3}).json()["runs"]
    assert [r["metrics"]["accuracy"] for r in ascending] == sorted(numbers)[:3]
    html = app_client.get("/runs", params={"q": "sorted-", "sort": "metric:accuracy", "metrics": "accuracy"}).text
    assert html.index(f">{numbers[0]:.4g}<") < html.index(f">{numbers[1]:.4g}<")
    bad = app_client.get("/runs", params={"sort": 'metric:acc"uracy'})
    assert bad.status_code == 400 and "Cannot sort on metric" in bad.text


def test_metric_sort_sql_on_each_backend(database_url: str) -> None:
    db = Database(database_url)
    db.upgrade()
    try:
        ids = seed(db, [0.5, 0.9, None, 0.7, "high", 0.1], "b")
        value = func.coalesce(metric_value(db.dialect, "accuracy"), literal(-NO_VALUE))
        with db.read() as s:
            ordered = list(s.scalars(select(Run.id).order_by(value.desc(), Run.id.desc())))
        assert ordered[:4] == [ids[1], ids[3], ids[0], ids[5]] and set(ordered[4:]) == {ids[2], ids[4]}
    finally:
        db.dispose()
