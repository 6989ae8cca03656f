"""kfbox's own registry client against a real ``kfbox up``, cross-checked with the upstream client.

What one writes, the other reads: the two speak the same REST API (paths, bodies, properties).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from kfbox.client.registry import ModelArtifact, RegistryClient, from_properties, to_properties
from kfbox.errors import Conflict, InvalidInput, Unavailable
from tests.support import ServerProcess, upstream_registry

if TYPE_CHECKING:
    from model_registry import ModelRegistry


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[RegistryClient]:
    with RegistryClient("http://127.0.0.1", server.port, author="alice", is_secure=False) as registry:
        yield registry


@pytest.fixture(scope="module")
def upstream(server: ServerProcess) -> ModelRegistry:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "User access token is missing": none is needed on loopback
        return upstream_registry(server.port, author="bob")


def test_what_kfbox_client_registers_the_upstream_client_reads(client: RegistryClient,
                                                                upstream: ModelRegistry) -> None:
    client.register_model("iris", "s3://models/iris/v1", model_format_name="sklearn", model_format_version="1.5",
                          version="v1", version_description="first",
                          metadata={"accuracy": 0.97, "epochs": 5, "scaler": "standard", "tuned": True})
    client.register_model("iris", "s3://models/iris/v2", model_format_name="sklearn", model_format_version="1.5",
                          version="v2", metadata={"accuracy": 0.98})

    version = upstream.get_model_version("iris", "v1")
    assert version is not None
    assert version.custom_properties == {"accuracy": 0.97, "epochs": 5, "scaler": "standard", "tuned": True}
    assert version.author == "alice" and version.description == "first"
    artifact = upstream.get_model_artifact("iris", "v2")
    assert artifact is not None and artifact.uri == "s3://models/iris/v2"
    assert artifact.model_format_name == "sklearn" and artifact.model_format_version == "1.5"
    assert [v.name for v in upstream.get_model_versions("iris")] == ["v1", "v2"]
    model = upstream.get_registered_model("iris")
    assert model is not None and model.owner == "alice"


def test_what_the_upstream_client_registers_kfbox_client_reads(client: RegistryClient,
                                                                upstream: ModelRegistry) -> None:
    upstream.register_model("wine", "file:///models/wine", model_format_name="xgboost", model_format_version="2",
                            version="v7", metadata={"f1": 0.5, "rows": 178})

    version = client.get_model_version("wine", "v7")
    assert version is not None
    assert version.name == "v7" and version.author == "bob" and version.state == "LIVE"
    assert version.custom_properties == {"f1": 0.5, "rows": 178}
    artifact = client.get_model_artifact("wine", "v7")
    assert artifact is not None and artifact.uri == "file:///models/wine"
    assert (artifact.model_format_name, artifact.model_format_version) == ("xgboost", "2")
    assert "wine" in {m.name for m in client.get_registered_models()}
    assert [v.name for v in client.get_model_versions("wine")] == ["v7"]


def test_missing_things_read_as_none(client: RegistryClient) -> None:
    assert client.get_registered_model("no-such-model") is None
    assert client.get_model_version("no-such-model", "v1") is None
    assert client.get_model_artifact("no-such-model", "v1") is None
    assert list(client.get_model_versions("no-such-model")) == []


def test_update_is_seen_by_the_upstream_client(client: RegistryClient, upstream: ModelRegistry) -> None:
    client.register_model("digits", "s3://m/d", model_format_name="sklearn", model_format_version="1",
                          version="v1", metadata={"accuracy": 0.5})
    version = client.get_model_version("digits", "v1")
    assert version is not None
    updated = client.update(version, state="ARCHIVED", description="superseded", metadata={"reviewed": True})
    assert updated.state == "ARCHIVED" and updated.custom_properties == {"accuracy": 0.5, "reviewed": True}
    seen = upstream.get_model_version("digits", "v1")
    assert seen is not None and str(seen.state).endswith("ARCHIVED") and seen.description == "superseded"

    artifact = client.get_model_artifact("digits", "v1")
    assert isinstance(artifact, ModelArtifact)
    assert client.update(artifact, metadata={"size": 3}).custom_properties == {"size": 3}


def test_an_existing_version_is_a_conflict_and_nothing_more_is_written(client: RegistryClient) -> None:
    client.register_model("dup", "s3://m/dup1", model_format_name="sklearn", model_format_version="1", version="v1")
    with pytest.raises(Conflict, match="already has a version 'v1'"):
        client.register_model("dup", "s3://m/dup2", model_format_name="sklearn", model_format_version="1",
                              version="v1")
    artifact = client.get_model_artifact("dup", "v1")
    assert artifact is not None and artifact.uri == "s3://m/dup1"


def test_all_calls_share_one_keep_alive_connection(server: ServerProcess) -> None:
    with RegistryClient("http://127.0.0.1", server.port, author="carol", is_secure=False) as registry:
        for i in range(3):
            registry.register_model("reuse", f"s3://m/{i}", model_format_name="sklearn", model_format_version="1",
                                    version=f"v{i}")
        assert registry.get_model_artifact("reuse", "v2") is not None
        pool = registry.http._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1


def test_from_env_reads_the_task_environment(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_REGISTRY_HOST", "http://127.0.0.1")
    monkeypatch.setenv("MODEL_REGISTRY_PORT", str(server.port))
    with RegistryClient.from_env(author="task") as registry:
        assert registry.base_url == f"http://127.0.0.1:{server.port}"
        assert registry.get_registered_model("no-such-model") is None


def test_an_unreachable_registry_is_unavailable_with_the_address() -> None:
    with RegistryClient("http://127.0.0.1", 9, is_secure=False) as registry, \
            pytest.raises(Unavailable, match=r"127\.0\.0\.1:9"):
        registry.get_registered_model("iris")


def test_properties_round_trip_and_refuse_other_types() -> None:
    values: dict[str, Any] = {"a": 1, "b": 0.25, "c": "x", "d": False}
    assert from_properties(to_properties(values)) == values
    bad: dict[str, Any] = {"bad": [1]}
    with pytest.raises(InvalidInput, match="'bad' is a list"):
        to_properties(bad)


def test_the_package_exports_the_client_surface() -> None:
    import kfbox.client

    assert set(kfbox.client.__all__) == {"ApiClient", "RegistryClient", "error_from_response", "resolve_url"}
    assert all(getattr(kfbox.client, name) is not None for name in kfbox.client.__all__)
