"""KFP lists page with signed tokens scoped to the list, the sort and the filter (kfbox.paging): a walk
over every page sees each row once, and a hand-made, edited or replayed token is a 400 in KFP's error
shape. In-process, on rows written straight into the database (kfp.Client's paging is in test_api)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from kfbox.pipelines.tables import Experiment, Pipeline, PipelineVersion, Run

pytestmark = pytest.mark.inprocess

KFP = "/apis/v2beta1"
SPEC = {"pipelineInfo": {"name": "paging"}, "root": {"dag": {"tasks": {}}}, "components": {},
        "deploymentSpec": {"executors": {}}}
COUNT = 11
# (list path, the key of its rows, the key of a row's id)
LISTS = [("/experiments", "experiments", "experiment_id"), ("/runs", "runs", "run_id"),
         ("/pipelines", "pipelines", "pipeline_id"), ("/pipelines/{pid}/versions", "pipeline_versions",
                                                      "pipeline_version_id"),
         ("/recurringruns", "recurringRuns", "recurring_run_id")]


@pytest.fixture(scope="module")
def seeded(app_client: TestClient) -> dict[str, Any]:
    """COUNT experiments, runs, pipelines, versions of one pipeline, and recurring runs; half named even-*."""
    platform = app_client.app.state.platform  # type: ignore[attr-defined]
    now = int(time.time() * 1000)
    experiment, pipeline = str(uuid.uuid4()), str(uuid.uuid4())
    with platform.db.write() as s:
        s.add(Experiment(id=experiment, display_name="paging", created_ms=now))
        s.add(Pipeline(id=pipeline, display_name="paging", created_ms=now))
        s.flush()
        for i in range(COUNT):
            name = f"{'even' if i % 2 == 0 else 'odd'}-{i}"
            s.add(Experiment(id=str(uuid.uuid4()), display_name=f"exp-{name}", created_ms=now + i))
            s.add(Pipeline(id=str(uuid.uuid4()), display_name=f"pipe-{name}", created_ms=now + i))
            s.add(PipelineVersion(id=str(uuid.uuid4()), pipeline_id=pipeline, display_name=name, created_ms=now + i,
                                  pipeline_spec=SPEC))
            s.add(Run(id=str(uuid.uuid4()), experiment_id=experiment, display_name=name, pipeline_spec=SPEC,
                      parameters={}, state="SUCCEEDED", state_history=[], created_ms=now + i % 3))  # ties: id breaks
    for i in range(COUNT):
        name = f"{'even' if i % 2 == 0 else 'odd'}-{i}"
        reply = app_client.post(f"{KFP}/recurringruns", json={
            "display_name": name, "pipeline_spec": SPEC, "mode": "DISABLE", "experiment_id": experiment,
            "trigger": {"periodic_schedule": {"interval_second": "3600"}}})
        assert reply.status_code == 200, reply.text
    return {"pid": pipeline, "experiment": experiment}


def walk(client: TestClient, path: str, rows: str, key: str, **params: Any) -> tuple[list[str], int]:
    """Every page, following next_page_token; the ids seen and the number of pages."""
    ids: list[str] = []
    token, pages = "", 0
    while True:
        reply = client.get(KFP + path, params={**params, "page_token": token, "page_size": 3})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        ids += [row[key] for row in body[rows]]
        pages += 1
        token = body["next_page_token"]
        if not token:
            return ids, pages
        assert pages < 50


@pytest.mark.parametrize(("path", "rows", "key"), LISTS, ids=[entry[0] for entry in LISTS])
def test_a_walk_over_every_page_sees_each_row_once(app_client: TestClient, seeded: dict[str, Any], path: str,
                                                   rows: str, key: str) -> None:
    path = path.format(pid=seeded["pid"])
    params = {"experiment_id": seeded["experiment"]} if rows in ("runs", "recurringRuns") else {}
    everything = app_client.get(KFP + path, params={**params, "page_size": 1000}).json()
    for sort in ("created_at desc", "created_at", "name"):
        ids, pages = walk(app_client, path, rows, key, sort_by=sort, **params)
        assert len(ids) == len(set(ids)) == everything["total_size"] and pages == -(-len(ids) // 3), sort
        assert set(ids) == {row[key] for row in everything[rows]}
    name = {"experiments": "exp-even", "pipelines": "pipe-even"}.get(rows, "even")
    flt = json.dumps({"predicates": [{"key": "display_name", "operation": "IS_SUBSTRING", "string_value": name}]})
    ids, _ = walk(app_client, path, rows, key, filter=flt, **params)
    assert len(set(ids)) == len(ids) == (COUNT + 1) // 2


def first_token(client: TestClient, path: str, **params: Any) -> str:
    token: str = client.get(KFP + path, params={**params, "page_size": 2}).json()["next_page_token"]
    assert token
    return token


def assert_refused(client: TestClient, path: str, token: str, **params: Any) -> None:
    reply = client.get(KFP + path, params={**params, "page_size": 2, "page_token": token})
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["code"] == 3 and "page_token" in body["message"] and "not issued by this server" in body["message"]
    assert "Start again without page_token" in body["message"]


@pytest.mark.parametrize(("path", "rows", "key"), LISTS, ids=[entry[0] for entry in LISTS])
def test_a_token_used_with_another_sort_filter_or_list_is_a_400(app_client: TestClient, seeded: dict[str, Any],
                                                                path: str, rows: str, key: str) -> None:
    path = path.format(pid=seeded["pid"])
    flt = json.dumps({"predicates": [{"key": "display_name", "operation": "IS_SUBSTRING", "string_value": "e"}]})
    token = first_token(app_client, path, sort_by="created_at desc", filter=flt)
    assert app_client.get(KFP + path, params={"sort_by": "created_at desc", "filter": flt, "page_size": 5,
                                              "page_token": token}).status_code == 200  # page_size may change
    assert_refused(app_client, path, token, sort_by="created_at asc", filter=flt)
    assert_refused(app_client, path, token, sort_by="name desc", filter=flt)
    assert_refused(app_client, path, token, sort_by="created_at desc")
    other = json.dumps({"predicates": [{"key": "display_name", "operation": "IS_SUBSTRING", "string_value": "o"}]})
    assert_refused(app_client, path, token, sort_by="created_at desc", filter=other)
    for elsewhere in [p.format(pid=seeded["pid"]) for p, _, _ in LISTS if p.format(pid=seeded["pid"]) != path]:
        assert_refused(app_client, elsewhere, token, sort_by="created_at desc", filter=flt)


def test_a_token_of_one_experiments_runs_is_refused_for_all_runs(app_client: TestClient,
                                                                 seeded: dict[str, Any]) -> None:
    token = first_token(app_client, "/runs", experiment_id=seeded["experiment"])
    assert_refused(app_client, "/runs", token)


@pytest.mark.parametrize("edit", ["payload", "signature", "hand-made", "truncated"])
def test_a_tampered_token_is_a_400(app_client: TestClient, seeded: dict[str, Any], edit: str) -> None:
    import base64

    token = first_token(app_client, "/experiments")
    payload, _, signature = token.partition(".")
    tampered = {
        "payload": base64.urlsafe_b64encode(b"0").decode().rstrip("=") + "." + signature,  # back to the first page
        "signature": payload + "." + signature[:-2] + ("AA" if not signature.endswith("AA") else "BB"),
        "hand-made": base64.urlsafe_b64encode(json.dumps({"offset": 2}).encode()).decode(),
        "truncated": token[:-1],
    }[edit]
    assert_refused(app_client, "/experiments", tampered)
