"""The same registry behaviour on SQLite, PostgreSQL and MariaDB: filters, ordering, uniqueness races.

Each test gets a fresh database of each backend (``database_url``) and its own ``kfbox up --db``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess

V1 = "/api/model_registry/v1"


@pytest.fixture
def backend_server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess.start(tmp_path / "home", db=database_url)
    yield proc
    proc.stop()


def props(**values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[key] = {"metadataType": "MetadataBoolValue", "bool_value": value}
        elif isinstance(value, int):
            out[key] = {"metadataType": "MetadataIntValue", "int_value": str(value)}
        elif isinstance(value, float):
            out[key] = {"metadataType": "MetadataDoubleValue", "double_value": value}
        else:
            out[key] = {"metadataType": "MetadataStringValue", "string_value": value}
    return out


def names(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [item["name"] for item in reply.json()["items"]]


def test_filters_ordering_and_uniqueness(backend_server: ServerProcess) -> None:
    with backend_server.client() as http:
        model = http.post(f"{V1}/registered_models", json={"name": "Iris-KNN", "owner": "alice"}).json()
        specs = [("v1", dict(accuracy=0.91, epochs=5, framework="sklearn", tuned=False)),
                 ("v2", dict(accuracy=0.97, epochs=20, framework="sklearn", tuned=True)),
                 ("v3", dict(accuracy=0.99, epochs=50, framework="PyTorch", tuned=True)),
                 ("β-4", dict(accuracy=0.5, framework="jax"))]
        for name, values in specs:
            reply = http.post(f"{V1}/model_versions", json={"name": name, "registeredModelId": model["id"],
                                                            "customProperties": props(**values)})
            assert reply.status_code == 201, reply.text

        def where(query: str) -> list[str]:
            return names(http.get(f"{V1}/model_versions", params={"filterQuery": query, "orderBy": "ID"}))

        assert where("accuracy > 0.95") == ["v2", "v3"]
        assert where("accuracy.double_value <= 0.91") == ["v1", "β-4"]
        assert where("epochs >= 20") == ["v2", "v3"]
        assert where("epochs.int_value = 5") == ["v1"]
        assert where('framework = "sklearn" AND tuned = true') == ["v2"]
        assert where("tuned.bool_value = false") == ["v1"]
        assert where("framework.string_value ILIKE 'pytorch'") == ["v3"]
        assert where("framework LIKE 'sk%'") == ["v1", "v2"]
        assert where('(name = "v1" OR name = "v3") AND state = "LIVE"') == ["v1", "v3"]
        assert where("name IN ('v2', 'β-4', 'nope')") == ["v2", "β-4"]
        assert where("`framework` != 'sklearn'") == ["v3", "β-4"]
        assert where("NOT accuracy > 0.9") == ["β-4"]
        assert where(f"registeredModelId = '{model['id']}'") == ["v1", "v2", "v3", "β-4"]
        assert where("missing_property = 'x'") == []
        assert names(http.get(f"{V1}/registered_models", params={"filterQuery": "owner = 'alice'"})) == ["Iris-KNN"]
        # odd but valid filters run on every dialect; bad ones are 400s there too, never 500s
        for query in ("accuracy.int_value = 1", "framework > 5", "tuned = 'yes'", "`odd key. x` = 1",
                      "description ILIKE '%\\%'", "id >= 0 AND id < 2147483647", "epochs = 1.5",
                      "name LIKE '%\\'%'", "framework.string_value = '\u00e9\u0301'", "createTimeSinceEpoch > 0"):
            assert http.get(f"{V1}/model_versions", params={"filterQuery": query}).status_code == 200, query
        for query in ("accuracy > 'x' OR", "name = 1e999", "x.y_value = 1", "name IN ()"):
            assert http.get(f"{V1}/model_versions", params={"filterQuery": query}).status_code == 400, query

        newest = names(http.get(f"{V1}/registered_models/{model['id']}/versions",
                                params={"orderBy": "CREATE_TIME", "sortOrder": "DESC"}))
        assert newest == ["β-4", "v3", "v2", "v1"]
        v1 = http.get(f"{V1}/model_version", params={"name": "v1", "parentResourceId": model["id"]}).json()
        updated = http.patch(f"{V1}/model_versions/{v1['id']}", json={"state": "ARCHIVED", "description": "old"})
        assert updated.status_code == 200 and updated.json()["state"] == "ARCHIVED"
        assert updated.json()["customProperties"] == v1["customProperties"]  # omitted fields are kept
        assert int(updated.json()["lastUpdateTimeSinceEpoch"]) >= int(v1["lastUpdateTimeSinceEpoch"])
        recent = names(http.get(f"{V1}/model_versions", params={"orderBy": "LAST_UPDATE_TIME",
                                                                "sortOrder": "DESC", "pageSize": "1"}))
        assert recent == ["v1"]

        # one version name, eight racing creators: exactly one 201, the rest 409, no 5xx
        def create(_: int) -> int:
            with httpx.Client(base_url=backend_server.url, timeout=30) as own:
                return own.post(f"{V1}/model_versions", json={"name": "race", "registeredModelId": model["id"]}
                                ).status_code
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = sorted(pool.map(create, range(8)))
        assert statuses == [201] + [409] * 7
        assert http.get(f"{V1}/model_versions", params={"filterQuery": "name = 'race'"}).json()["size"] == 1


def _register_many(url: str, model_id: str, worker: int, count: int, queue: Any) -> None:
    """One client process: ``count`` version registrations, as fast as the server answers."""
    statuses: list[int] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(count):
            version = http.post(f"{V1}/model_versions", json={"name": f"w{worker}-v{i}", "registeredModelId": model_id,
                                                              "customProperties": {"worker": {
                                                                  "metadataType": "MetadataIntValue",
                                                                  "int_value": str(worker)}}})
            statuses.append(version.status_code)
    queue.put(statuses)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_eight_processes_register_four_hundred_versions(database_url: str, tmp_path: Path) -> None:
    proc = ServerProcess.start(tmp_path / "home", db=database_url)
    try:
        with proc.client() as http:
            model_id = http.post(f"{V1}/registered_models", json={"name": "storm"}).json()["id"]
            ctx = multiprocessing.get_context("fork")  # no re-import per worker
            queue = ctx.Queue()
            workers = [ctx.Process(target=_register_many, args=(proc.url, model_id, w, 50, queue)) for w in range(8)]
            for worker in workers:
                worker.start()
            statuses = [s for _ in workers for s in queue.get(timeout=240)]
            for worker in workers:
                worker.join(30)
            assert statuses.count(201) == 400 and len(statuses) == 400
            seen: list[str] = []
            token = ""
            while True:
                page = http.get(f"{V1}/registered_models/{model_id}/versions",
                                params={"pageSize": "150", "nextPageToken": token}).json()
                seen += [item["name"] for item in page["items"]]
                token = page["nextPageToken"]
                if not token:
                    break
            assert len(seen) == 400 and len(set(seen)) == 400
            assert set(seen) == {f"w{w}-v{i}" for w in range(8) for i in range(50)}
            metrics = http.get("/metrics").text
            assert 'status="5' not in metrics
            assert 'kfbox_http_requests_total{method="POST",route="/api/model_registry/v1/model_versions",' \
                   'status="201"} 400.0' in metrics
    finally:
        proc.stop()
