"""Sorting the runs list on a metric column sorts every run in the store, not one page of it:
the page in-process (``app_client``), the SQL on each database backend."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from kfbox.db import Database
from kfbox.pipelines.tables import Artifact, Experiment, Run
from kfbox.ui import metric_ranking
from kfbox.ui.metric_ranking import MetricValues, ordered_ids

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


@pytest.mark.inprocess
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


@pytest.mark.inprocess
@pytest.mark.parametrize("query", [{}, {"q": "walk-1"}])
def test_walking_the_ranking_gives_the_same_pages(app_client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                                  query: dict[str, str]) -> None:
    """Many runs pass the filter: the page walks the cached ranking in batches (made small here, so a
    page takes several) and then the runs without the metric; every page equals the full sort."""
    db = app_client.app.state.platform.db  # type: ignore[attr-defined]
    if not app_client.get("/runs.json", params={"q": "walk-"}).json()["runs"]:
        seed(db, [None if i % 9 == 0 else round((i * 53 % 97) / 97, 4) for i in range(150)], "walk")
    params = {"q": "walk-", **query}
    slow = [r["run_id"] for r in every_page(app_client, {**params, "sort": "metric:accuracy"}, 40)]
    monkeypatch.setattr(metric_ranking, "SMALL_SET", 5)
    monkeypatch.setattr(metric_ranking, "BATCH", 7)
    walked = every_page(app_client, {**params, "sort": "metric:accuracy"}, 40)
    assert [r["run_id"] for r in walked] == slow and len(slow) > 40
    values = [r["metrics"].get("accuracy") for r in walked]
    numbers = [v for v in values if v is not None]
    assert numbers == sorted(numbers, reverse=True) and values[len(numbers):] == [None] * (len(values) - len(numbers))
    names = [r["display_name"] for r in walked if "accuracy" not in r["metrics"]]
    assert names == sorted(names, key=lambda n: -int(n.split("-")[1]))  # without the metric: newest first


def every_page(client: TestClient, params: dict[str, str], size: int) -> list[dict[str, Any]]:
    runs, token = [], ""
    while True:
        body = client.get("/runs.json", params={**params, "page_size": size, "page_token": token}).json()
        runs += body["runs"]
        token = body["next_page_token"]
        if not token:
            return runs


def test_metric_values_on_each_backend(database_url: str) -> None:
    """The metric's numbers read from artifact JSON by each backend's SQL (strings and absent keys
    skipped), kept until an artifact is added, then read again."""
    db = Database(database_url)
    db.upgrade()
    values = MetricValues()
    try:
        ids = seed(db, [0.5, 0.9, None, 0.7, "high", 0.1], "b")
        with db.read() as s:
            found = values.get(s, db.dialect, "accuracy")
        assert found.values == {ids[0]: 0.5, ids[1]: 0.9, ids[3]: 0.7, ids[5]: 0.1}
        assert found.ascending == [ids[5], ids[0], ids[3], ids[1]]
        newest_first = ids[::-1]
        expected = [ids[1], ids[3], ids[0], ids[5], ids[4], ids[2]]
        assert ordered_ids(newest_first, found, descending=True) == expected
        later = seed(db, [0.95], "c")
        with db.read() as s:
            assert values.get(s, db.dialect, "accuracy").values[later[0]] == 0.95
    finally:
        db.dispose()
