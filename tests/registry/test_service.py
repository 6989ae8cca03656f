"""``platform.services.registry``: what the serving subsystem calls, on a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfbox.db import Database
from kfbox.errors import InvalidInput, NotFound
from kfbox.registry import kinds, store
from kfbox.registry.service import Registry


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    db = Database(f"sqlite:///{tmp_path / 'kfbox.db'}")
    db.upgrade()
    registry = Registry(db)

    def seed(conn):  # type: ignore[no-untyped-def]
        model = store.create(conn, kinds.REGISTERED_MODEL, {"name": "iris"})
        for name, state in (("v1", "LIVE"), ("v2", "LIVE"), ("v3", "ARCHIVED")):
            version = store.create(conn, kinds.MODEL_VERSION, {"name": name, "state": state}, parent=model)
            store.create(conn, kinds.MODEL_ARTIFACT, {"name": "iris", "uri": f"s3://m/iris/{name}"}, parent=version)
        store.create(conn, kinds.MODEL_VERSION, {"name": "no-artifact"}, parent=model)
    registry.write(seed)
    return registry


def test_resolve_artifact_uri(registry: Registry) -> None:
    assert registry.resolve_artifact_uri("iris", "v1") == "s3://m/iris/v1"
    assert registry.resolve_artifact_uri("iris", "v3") == "s3://m/iris/v3"  # archived, but named explicitly
    with pytest.raises(NotFound, match="kfbox models list"):
        registry.resolve_artifact_uri("nope", None)
    with pytest.raises(NotFound, match=r"no version 'v9'.*kfbox models show iris"):
        registry.resolve_artifact_uri("iris", "v9")
    with pytest.raises(NotFound, match="no model artifact"):
        registry.resolve_artifact_uri("iris", "no-artifact")


def test_latest_live_version_is_the_default(registry: Registry) -> None:
    # the newest LIVE version has no artifact: resolving "latest" says so instead of guessing
    with pytest.raises(NotFound, match="'no-artifact'"):
        registry.resolve_artifact_uri("iris", None)

    def archive(session):  # type: ignore[no-untyped-def]
        found = store.find(session.connection(), "model_version", name="no-artifact")
        store.update(session, store.get(session, "model_version", found.id), {"state": "ARCHIVED"})
    registry.edit(archive)
    assert registry.resolve_artifact_uri("iris", None) == "s3://m/iris/v2"


def test_record_deployment_and_state(registry: Registry) -> None:
    first = registry.record_deployment("iris-svc", "iris", "v1", runtime="sklearn")
    service = first["inferenceService"]
    assert service["name"] == "iris-svc" and service["desiredState"] == "DEPLOYED"
    assert service["runtime"] == "sklearn" and first["serveModel"]["lastKnownState"] == "RUNNING"
    second = registry.record_deployment("iris-svc", "iris", "v2")
    assert second["inferenceService"]["id"] == service["id"]  # same service, now serving v2
    assert second["inferenceService"]["modelVersionId"] != service["modelVersionId"]
    assert second["serveModel"]["id"] != first["serveModel"]["id"]
    stopped = registry.set_deployment_state(service["id"], "UNDEPLOYED", serve_state="COMPLETE")
    assert stopped["desiredState"] == "UNDEPLOYED"
    with pytest.raises(InvalidInput):
        registry.set_deployment_state(service["id"], "PAUSED")
    with pytest.raises(NotFound):
        registry.record_deployment("x", "iris", "v9")
