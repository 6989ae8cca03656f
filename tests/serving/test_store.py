"""InferenceServices and revisions persist the same on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import pytest

from kfbox.db import Database
from kfbox.errors import Conflict, NotFound
from kfbox.serving.spec import InferenceServiceSpec
from kfbox.serving.store import ServingStore
from tests.serving.helpers import manifest


def spec(uri: str, **predictor: object) -> InferenceServiceSpec:
    return InferenceServiceSpec.parse(manifest("iris", uri, **predictor))


def test_revisions_canary_promote_rollback_delete(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.upgrade()
        store = ServingStore(db)
        record, created = store.apply(spec("pvc://m/v1"))
        assert (record.latest, record.stable, created) == (1, None, True)
        first_version = record.resource_version
        record, created = store.apply(spec("pvc://m/v1"))  # the same spec: no new revision, no new generation
        assert (record.latest, created, record.generation) == (1, False, 1)
        assert record.resource_version > first_version
        store.promote("default", "iris")
        record, created = store.apply(spec("pvc://m/v2", canary_traffic_percent=20))
        assert (record.latest, record.stable, record.canary_percent, created) == (2, 1, 20, True)
        assert record.revisions[2].storage_uri == "pvc://m/v2"
        record = store.rollback("default", "iris")
        assert (record.latest, record.stable, record.canary_percent) == (1, 1, None)
        with pytest.raises(Conflict):
            store.rollback("default", "iris")
        record, _ = store.apply(spec("pvc://m/v3", canary_traffic_percent=10))
        assert record.latest == 3  # revision numbers never repeat
        record = store.promote("default", "iris")
        assert (record.latest, record.stable, record.canary_percent) == (3, 3, None)
        assert "canaryTrafficPercent" not in record.manifest["spec"]["predictor"]
        assert [r.name for r in store.list()] == ["iris"]
        store.delete("default", "iris")
        with pytest.raises(NotFound):
            store.get("default", "iris")
        assert store.list() == []
    finally:
        db.dispose()


def test_kubernetes_metadata_versions_and_conflicts(database_url: str) -> None:
    """resourceVersion is one counter across objects; create refuses a taken name; a stale version is refused."""
    from kfbox.serving.kube_api import KubeStatus

    db = Database(database_url)
    try:
        db.upgrade()
        store = ServingStore(db)
        first = store.create(spec("pvc://m/v1"))
        assert first.uid and first.generation == 1 and first.resource_version == store.current_version()
        with pytest.raises(KubeStatus) as taken:
            store.create(spec("pvc://m/v1"))
        assert (taken.value.status_code, taken.value.reason) == (409, "AlreadyExists")
        touched = store.touch("default", "iris")
        assert touched is not None and touched.resource_version > first.resource_version
        with pytest.raises(KubeStatus) as stale:
            store.replace(spec("pvc://m/v2"), str(first.resource_version))
        assert (stale.value.status_code, stale.value.reason) == (409, "Conflict")
        replaced, created = store.replace(spec("pvc://m/v2"), str(touched.resource_version))
        assert created and replaced.generation == 2 and replaced.uid == first.uid
        store.create_namespace("team-a", {"tier": "gold"})
        assert [row.name for row in store.namespaces()] == ["team-a"]
        deleted_at = store.delete("default", "iris")
        assert deleted_at == store.current_version() > replaced.resource_version
    finally:
        db.dispose()


STANDARD = {"serving.kserve.io/deploymentMode": "Standard"}


def test_a_standard_change_of_the_hpa_fields_alone_rewrites_the_running_revision(database_url: str) -> None:
    """minReplicas, maxReplicas, scaleMetric and scaleTarget are the HPA's in Standard mode: the latest revision
    takes them (stored, so a restart reads them); anything else with them, or Knative mode, makes a revision."""
    db = Database(database_url)
    try:
        db.upgrade()
        store = ServingStore(db)
        store.apply(spec("pvc://m/v1", annotations=STANDARD))
        record, created = store.apply(spec("pvc://m/v1", annotations=STANDARD, min_replicas=2, max_replicas=4,
                                           scale_metric="cpu", scale_target=60))
        assert (record.latest, created, record.generation) == (1, False, 2)
        stored = store.get("default", "iris").revisions[1]
        assert (stored.min_replicas, stored.max_replicas, stored.scale_metric, stored.scale_target) == (2, 4, "cpu", 60)
        # the mode kept from creation counts, even when the update leaves the annotation out
        record, created = store.apply(spec("pvc://m/v1", min_replicas=3, max_replicas=4))
        assert (record.latest, created, record.revisions[1].min_replicas) == (1, False, 3)
        record, created = store.apply(spec("pvc://m/v2", annotations=STANDARD, min_replicas=1))
        assert (record.latest, created) == (2, True)  # storageUri is the pod template's: a new revision
        store.delete("default", "iris")
        store.apply(spec("pvc://m/v1"))
        record, created = store.apply(spec("pvc://m/v1", min_replicas=2))
        assert (record.latest, created) == (2, True)  # Knative: min-scale is the revision template's
    finally:
        db.dispose()
