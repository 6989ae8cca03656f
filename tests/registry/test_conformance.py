"""Where kfbox's registry answered differently from upstream's server (issue 12), one test per point.

Each point made an upstream client live test fail (model-registry 0.3.8 on ``/v1alpha3``,
0.3.18 on ``/v1``); the upstream behaviour is read from kubeflow/model-registry's Go server
(``internal/server/openapi``, ``internal/core``, ``internal/converter``).
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, upstream_registry

warnings.filterwarnings("ignore", message="User access token is missing")
V1 = "/api/model_registry/v1"
V1ALPHA3 = "/api/model_registry/v1alpha3"
PREFIXES = (V1, V1ALPHA3)
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def created(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def new_run(http: httpx.Client, prefix: str = V1ALPHA3) -> dict[str, Any]:
    experiment = created(http.post(f"{prefix}/experiments", json={"name": f"exp-{uuid.uuid4().hex[:8]}"}))
    return created(http.post(f"{prefix}/experiment_runs", json={"experimentId": experiment["id"]}))


def test_metric_step_is_an_integer_on_v1alpha3_and_a_string_on_v1(http: httpx.Client) -> None:
    run = new_run(http)
    metric = created(http.post(f"{V1ALPHA3}/experiment_runs/{run['id']}/artifacts",
                               json={"artifactType": "metric", "name": "loss", "value": 0.5, "step": 4}))
    assert metric["step"] == 4  # int64 in the v1alpha3 spec; 0.3.8's pydantic model is StrictInt
    listed = http.get(f"{V1ALPHA3}/experiment_runs/{run['id']}/artifacts").json()["items"]
    assert [m["step"] for m in listed] == [4]
    history = http.get(f"{V1ALPHA3}/experiment_runs/{run['id']}/metric_history").json()["items"]
    assert [m["step"] for m in history] == [4]
    # the same artifact through /v1, where 0.3.18's model is StrictStr
    assert http.get(f"{V1}/artifacts/{metric['id']}").json()["step"] == "4"
    assert http.post(f"{V1ALPHA3}/experiment_runs/{run['id']}/artifacts",
                     json={"artifactType": "metric", "name": "bad", "value": 1.0, "step": "four"}).status_code == 400


@pytest.mark.parametrize("prefix", PREFIXES)
def test_artifacts_created_without_a_name_get_a_uuid(http: httpx.Client, prefix: str) -> None:
    loose = created(http.post(f"{prefix}/artifacts", json={"artifactType": "doc-artifact", "uri": "https://x"}))
    assert UUID.match(loose["name"]), loose
    model = created(http.post(f"{prefix}/registered_models", json={"name": f"named-{prefix[-2:]}"}))
    version = created(http.post(f"{prefix}/model_versions", json={"name": "v1", "registeredModelId": model["id"]}))
    first = created(http.post(f"{prefix}/model_versions/{version['id']}/artifacts",
                              json={"artifactType": "doc-artifact", "uri": "https://README.md"}))
    second = created(http.post(f"{prefix}/model_versions/{version['id']}/artifacts",
                               json={"artifactType": "model-artifact", "uri": "s3://m"}))
    assert UUID.match(first["name"]) and UUID.match(second["name"]) and first["name"] != second["name"]
    assert http.get(f"{prefix}/artifacts/{first['id']}").json()["name"] == first["name"]


def test_the_upstream_client_reads_an_unnamed_doc_artifact(server: ServerProcess) -> None:
    from model_registry.types import DocArtifact

    registry = upstream_registry(server.port, author="a")
    registry.register_model("doc-model", "s3://doc", model_format_name="onnx", model_format_version="1",
                            version="v1")
    version = registry.get_model_version("doc-model", "v1")
    assert version is not None and version.id is not None
    doc = registry.async_runner(registry._api.upsert_model_version_artifact(DocArtifact(uri="https://README.md"),
                                                                            version.id))
    assert isinstance(doc, DocArtifact) and UUID.match(doc.name or "")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_missing_required_field_is_422_with_upstreams_body(http: httpx.Client, prefix: str) -> None:
    model = created(http.post(f"{prefix}/registered_models", json={"name": f"req-{prefix[-2:]}"}))
    reply = http.post(f"{prefix}/model_versions", json={"registeredModelId": model["id"]})
    assert reply.status_code == 422
    assert reply.json() == {"code": "Bad Request", "message": "required field 'name' is zero value."}
    empty = http.post(f"{prefix}/registered_models", json={"name": ""})
    assert empty.status_code == 422 and empty.json()["message"] == "required field 'name' is zero value."


@pytest.mark.parametrize("prefix", PREFIXES)
def test_error_code_is_the_status_text(http: httpx.Client, prefix: str) -> None:
    unknown = http.post(f"{prefix}/registered_models", json={"name": "x", "ext_id": 123})
    assert unknown.status_code == 400
    assert unknown.json() == {"code": "Bad Request", "message": 'json: unknown field "ext_id"'}
    missing = http.get(f"{prefix}/registered_models/999999")
    assert missing.status_code == 404 and missing.json()["code"] == "Not Found"
    created(http.post(f"{prefix}/registered_models", json={"name": f"twice-{prefix[-2:]}"}))
    twice = http.post(f"{prefix}/registered_models", json={"name": f"twice-{prefix[-2:]}"})
    assert twice.status_code == 409 and twice.json()["code"] == "Conflict"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_owned_names_fit_parent_id_colon_name_in_255(http: httpx.Client, prefix: str) -> None:
    model = created(http.post(f"{prefix}/registered_models", json={"name": prefix[-1] * 255}))  # top level: 255
    room = 255 - len(model["id"]) - 1
    assert http.post(f"{prefix}/model_versions",
                     json={"name": "v" * room, "registeredModelId": model["id"]}).status_code == 201
    too_long = http.post(f"{prefix}/model_versions", json={"name": "w" * (room + 1), "registeredModelId": model["id"]})
    assert too_long.status_code == 400 and f"the limit is {room}" in too_long.json()["message"], too_long.text
    # a parentless artifact's name is prefixed with a UUID upstream: 255 - 37
    for length, status in ((218, 201), (219, 400)):
        doc = {"artifactType": "doc-artifact", "name": prefix[-1] * length}
        assert http.post(f"{prefix}/artifacts", json=doc).status_code == status


def test_the_upstream_client_refuses_a_version_name_past_the_limit(server: ServerProcess) -> None:
    registry = upstream_registry(server.port, author="a")
    lorem = "l" * 250
    registry.register_model("long-names", "s3://x", model_format_name="f", model_format_version="1", version=lorem)
    assert registry.get_model_version("long-names", lorem) is not None
    with pytest.raises(Exception, match=r"limit|400"):
        registry.register_model("long-names", "s3://x", model_format_name="f", model_format_version="1",
                                version=lorem + "12345")


def test_experiment_run_artifacts_carry_their_run_for_filter_query(http: httpx.Client) -> None:
    runs = [new_run(http) for _ in range(3)]
    for run in runs:
        for key in ("acc", "loss"):
            created(http.post(f"{V1ALPHA3}/experiment_runs/{run['id']}/artifacts",
                              json={"artifactType": "metric", "name": key, "value": 1.0, "step": 0}))
    wanted = ",".join(f"'{r['id']}'" for r in runs[:2])
    found = http.get(f"{V1ALPHA3}/artifacts", params={"artifactType": "metric",
                                                      "filterQuery": f"experimentRunId IN ({wanted})"})
    assert found.status_code == 200, found.text
    items = found.json()["items"]
    assert sorted((a["experimentRunId"], a["name"]) for a in items) == sorted(
        (r["id"], key) for r in runs[:2] for key in ("acc", "loss"))
    assert all(a["experimentId"] == runs[0]["experimentId"] or a["experimentRunId"] != runs[0]["id"] for a in items)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_artifact_names_are_unique_per_artifact_type(http: httpx.Client, prefix: str) -> None:
    """Upstream keeps names unique per (type, parent): a version holds a model-artifact and a doc-artifact of one
    name, and so does the top level; a second of one type under a version is a 409. ``GET /artifact`` by a name two
    types share answers 404 "multiple artifacts found", as upstream's ``getArtifactsByParams``; ``/model_artifact``
    finds its own."""
    model = created(http.post(f"{prefix}/registered_models", json={"name": f"shared-{uuid.uuid4().hex[:8]}"}))
    version = created(http.post(f"{prefix}/model_versions", json={"name": "v1", "registeredModelId": model["id"]}))
    arts = f"{prefix}/model_versions/{version['id']}/artifacts"
    weights = created(http.post(arts, json={"artifactType": "model-artifact", "name": "weights", "uri": "s3://b/w"}))
    card = created(http.post(arts, json={"artifactType": "doc-artifact", "name": "weights", "uri": "s3://b/w.md"}))
    again = http.post(arts, json={"artifactType": "doc-artifact", "name": "weights", "uri": "s3://b/x.md"})
    assert again.status_code == 409 and again.json()["code"] == "Conflict", again.text
    listed = http.get(arts).json()["items"]
    assert sorted((a["artifactType"], a["id"]) for a in listed) == [("doc-artifact", card["id"]),
                                                                    ("model-artifact", weights["id"])]
    query = {"name": "weights", "parentResourceId": version["id"]}
    both = http.get(f"{prefix}/artifact", params=query)
    assert both.status_code == 404 and f"model-artifact {weights['id']}" in both.json()["message"], both.text
    assert http.get(f"{prefix}/model_artifact", params=query).json()["id"] == weights["id"]
    top = f"top-{uuid.uuid4().hex[:8]}"
    for kind in ("model-artifact", "doc-artifact"):
        created(http.post(f"{prefix}/artifacts", json={"artifactType": kind, "name": top, "uri": "s3://b/t"}))
