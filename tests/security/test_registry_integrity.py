"""Registry data cannot be taken from its owner, and one name has one identity (issue 8 items 5, 11).

* Item 5: ``POST /model_versions/{B}/artifacts {"id": X, ...}`` where X belongs to version A
  used to answer 200, move X to B and rewrite its URI -- A lost its model file. Now a 409 that
  changes nothing; an unattached artifact can still be attached. Driven with the upstream
  ``model_registry`` client (its ``upsert_model_version_artifact``) and with raw HTTP.
* Item 11: ``café`` typed NFC or NFD is one registered model (and one version name).
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support import ServerProcess, upstream_registry

if TYPE_CHECKING:
    from model_registry import ModelRegistry

warnings.filterwarnings("ignore", message="User access token is missing")
PREFIXES = ("/api/model_registry/v1", "/api/model_registry/v1alpha3")


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server  # the package's plain server (tests/security/conftest.py)


@pytest.fixture(scope="module")
def registry(server: ServerProcess) -> Iterator[ModelRegistry]:
    yield upstream_registry(server.port, author="alice")


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def artifacts_of(http: httpx.Client, prefix: str, version_id: str) -> list[dict[str, Any]]:
    reply = http.get(f"{prefix}/model_versions/{version_id}/artifacts")
    assert reply.status_code == 200, reply.text
    return list(reply.json()["items"])


def test_the_upstream_client_cannot_take_another_versions_artifact(registry: ModelRegistry,
                                                                   http: httpx.Client) -> None:
    registry.register_model("owner-a", "s3://a/model", model_format_name="sklearn", model_format_version="1",
                            version="v1")
    registry.register_model("thief-b", "s3://b/model", model_format_name="sklearn", model_format_version="1",
                            version="v1")
    theirs = registry.get_model_artifact("owner-a", "v1")
    target = registry.get_model_version("thief-b", "v1")
    assert theirs is not None and target is not None and target.id is not None
    theirs.uri = "s3://evil/overwritten"

    with pytest.raises(Exception, match=r"409|belongs to"):
        registry.async_runner(registry._api.upsert_model_version_artifact(theirs, target.id))

    still = registry.get_model_artifact("owner-a", "v1")
    assert still is not None and still.uri == "s3://a/model" and still.id == theirs.id
    assert registry.get_model_artifact("thief-b", "v1").uri == "s3://b/model"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_raw_upsert_of_a_foreign_artifact_is_409_and_changes_nothing(http: httpx.Client, prefix: str) -> None:
    tag = prefix.rsplit("/", 1)[1]
    model_a = http.post(f"{prefix}/registered_models", json={"name": f"raw-a-{tag}"}).json()["id"]
    model_b = http.post(f"{prefix}/registered_models", json={"name": f"raw-b-{tag}"}).json()["id"]
    version_a = http.post(f"{prefix}/model_versions", json={"name": "v1", "registeredModelId": model_a}).json()["id"]
    version_b = http.post(f"{prefix}/model_versions", json={"name": "v1", "registeredModelId": model_b}).json()["id"]
    # a second version of the same model is "another version" too
    version_a2 = http.post(f"{prefix}/model_versions", json={"name": "v2", "registeredModelId": model_a}).json()["id"]
    created = http.post(f"{prefix}/model_versions/{version_a}/artifacts",
                        json={"artifactType": "model-artifact", "name": "model", "uri": "s3://a/v1"})
    assert created.status_code == 201, created.text
    artifact = created.json()
    before = http.get(f"{prefix}/artifacts/{artifact['id']}").json()

    for target in (version_b, version_a2):
        reply = http.post(f"{prefix}/model_versions/{target}/artifacts",
                          json={"artifactType": "model-artifact", "id": artifact["id"], "uri": "s3://evil/x"})
        assert reply.status_code == 409, reply.text
        assert reply.json()["code"] == "Conflict" and "belongs to model version" in reply.json()["message"]
        assert artifacts_of(http, prefix, target) == []

    assert http.get(f"{prefix}/artifacts/{artifact['id']}").json() == before
    assert [a["id"] for a in artifacts_of(http, prefix, version_a)] == [artifact["id"]]

    # its own version may still update it through the same endpoint (upstream's "existing" upsert)
    again = http.post(f"{prefix}/model_versions/{version_a}/artifacts",
                      json={"artifactType": "model-artifact", "id": artifact["id"], "uri": "s3://a/v1-fixed"})
    assert again.status_code == 200, again.text
    assert again.json()["uri"] == "s3://a/v1-fixed" and again.json()["name"] == "model"


def test_an_unattached_artifact_can_be_attached(http: httpx.Client) -> None:
    prefix = PREFIXES[0]
    model = http.post(f"{prefix}/registered_models", json={"name": "attach-me"}).json()["id"]
    version = http.post(f"{prefix}/model_versions", json={"name": "v1", "registeredModelId": model}).json()["id"]
    loose = http.post(f"{prefix}/artifacts", json={"artifactType": "model-artifact", "name": "loose",
                                                     "uri": "s3://loose"})
    assert loose.status_code == 201, loose.text
    reply = http.post(f"{prefix}/model_versions/{version}/artifacts",
                      json={"artifactType": "model-artifact", "id": loose.json()["id"]})
    assert reply.status_code == 200, reply.text
    assert [a["id"] for a in artifacts_of(http, prefix, version)] == [loose.json()["id"]]


def test_the_upstream_client_still_updates_its_own_artifact(registry: ModelRegistry) -> None:
    from model_registry.types import ModelArtifact

    registry.register_model("keeps-own", "s3://own/1", model_format_name="onnx", model_format_version="1",
                            version="v1")
    mine = registry.get_model_artifact("keeps-own", "v1")
    version = registry.get_model_version("keeps-own", "v1")
    assert mine is not None and version is not None and version.id is not None
    mine.uri = "s3://own/2"
    updated = registry.async_runner(registry._api.upsert_model_version_artifact(mine, version.id))
    assert isinstance(updated, ModelArtifact) and updated.uri == "s3://own/2" and updated.id == mine.id


@pytest.mark.parametrize("prefix", PREFIXES)
def test_nfc_and_nfd_spellings_are_one_registered_model(http: httpx.Client, prefix: str) -> None:
    tag = prefix.rsplit("/", 1)[1]
    nfc, nfd = unicodedata.normalize("NFC", f"café-{tag}"), unicodedata.normalize("NFD", f"café-{tag}")
    assert nfc != nfd
    first = http.post(f"{prefix}/registered_models", json={"name": nfd})
    assert first.status_code == 201, first.text
    second = http.post(f"{prefix}/registered_models", json={"name": nfc})
    assert second.status_code == 409, second.text
    for spelling in (nfc, nfd):
        found = http.get(f"{prefix}/registered_model", params={"name": spelling})
        assert found.status_code == 200, found.text
        assert found.json()["id"] == first.json()["id"]
    # versions are named within their model the same way
    model_id = first.json()["id"]
    assert http.post(f"{prefix}/model_versions", json={"name": "é1", "registeredModelId": model_id}).status_code == 201
    dup = http.post(f"{prefix}/model_versions",
                    json={"name": unicodedata.normalize("NFD", "é1"), "registeredModelId": model_id})
    assert dup.status_code == 409, dup.text


def test_the_upstream_client_finds_a_model_by_either_spelling(registry: ModelRegistry) -> None:
    nfd = unicodedata.normalize("NFD", "crème-brûlée")
    registry.register_model(nfd, "s3://dessert", model_format_name="sklearn", model_format_version="1",
                            version="v1")
    by_nfc = registry.get_registered_model(unicodedata.normalize("NFC", "crème-brûlée"))
    assert by_nfc is not None and by_nfc.name == unicodedata.normalize("NFC", "crème-brûlée")
    with pytest.raises(Exception, match=r"409|already exists"):
        registry.register_model(unicodedata.normalize("NFC", "crème-brûlée"), "s3://again",
                                model_format_name="sklearn", model_format_version="1", version="v1")
