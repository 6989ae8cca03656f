"""Persistence of InferenceServices and their revisions: the source of truth across restarts.

Every write takes the next ``resourceVersion`` from one counter row, in the same transaction,
so versions grow strictly across all objects (what watch and optimistic concurrency rely on);
``generation`` grows only when ``spec`` changes, as in Kubernetes.

A changed predictor makes a new revision, except in Standard mode when only the HPA's fields changed
(:func:`hpa_only`): KServe's raw reconciler writes those into the HorizontalPodAutoscaler, not the Deployment's
pod template, so the running revision takes its new bounds in place (its stored predictor is rewritten).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kfbox.clock import now_ms
from kfbox.db import Database
from kfbox.errors import Conflict, InvalidInput
from kfbox.serving.kube_api import KubeStatus, already_exists, invalid, not_found, stale
from kfbox.serving.scaling_spec import MODE_ANNOTATION, STANDARD, annotations_of, deployment_mode, kept_mode
from kfbox.serving.spec import InferenceServiceSpec, PredictorSpec
from kfbox.serving.tables import CounterRow, NamespaceRow, RevisionRow, ServiceRow

SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
                   "deletionTimestamp", "deletionGracePeriodSeconds")
"""Metadata the server owns: never stored from what a client sends."""


@dataclasses.dataclass(frozen=True)
class ServiceRecord:
    namespace: str
    name: str
    manifest: dict[str, Any]
    generation: int
    latest: int
    stable: int | None
    canary_percent: int | None
    revisions: dict[int, PredictorSpec]
    created_ms: int
    uid: str = ""
    resource_version: int = 0
    managed_fields: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def revision_name(name: str, number: int) -> str:
    """KServe's naming: ``<isvc>-predictor-00001``."""
    return f"{name}-predictor-{number:05d}"


def _not_found(namespace: str, name: str) -> KubeStatus:
    return not_found(name, namespace=namespace)


class ServingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def apply(self, spec: InferenceServiceSpec, managed_fields: list[dict[str, Any]] | None = None
              ) -> tuple[ServiceRecord, bool]:
        """Create or update; a changed predictor makes a new revision. Returns (record, new revision?)."""
        with self.db.write() as session:
            row = self._row(session, spec.namespace, spec.name)
            if row is None:
                return self._create(session, spec, managed_fields), True
            return self._update(session, row, spec, managed_fields)

    def create(self, spec: InferenceServiceSpec, managed_fields: list[dict[str, Any]] | None = None
               ) -> ServiceRecord:
        """Kubernetes create: 409 AlreadyExists when the name is taken."""
        with self.db.write() as session:
            if self._row(session, spec.namespace, spec.name) is not None:
                raise already_exists(spec.name)
            return self._create(session, spec, managed_fields)

    def replace(self, spec: InferenceServiceSpec, resource_version: str | None,
                managed_fields: list[dict[str, Any]] | None = None) -> tuple[ServiceRecord, bool]:
        """Kubernetes update: 404 when absent, 409 Conflict when ``resource_version`` is given and stale."""
        with self.db.write() as session:
            row = self._row(session, spec.namespace, spec.name)
            if row is None:
                raise not_found(spec.name, namespace=spec.namespace)
            if resource_version not in (None, "") and str(row.resource_version) != str(resource_version):
                raise stale(spec.name, str(resource_version), row.resource_version)
            return self._update(session, row, spec, managed_fields)

    def touch(self, namespace: str, name: str) -> ServiceRecord | None:
        """A new resourceVersion for a status change; None when the object is gone."""
        with self.db.write() as session:
            row = self._row(session, namespace, name)
            if row is None:
                return None
            row.resource_version = self._next_version(session)
            return self._record(session, row)

    def current_version(self) -> int:
        with self.db.read() as session:
            counter = session.get(CounterRow, 1)
            return counter.value if counter is not None else 0

    def _create(self, session: Any, spec: InferenceServiceSpec,
                managed_fields: list[dict[str, Any]] | None) -> ServiceRecord:
        now = now_ms()
        row = ServiceRow(namespace=spec.namespace, name=spec.name, manifest=json.dumps(_stored(spec.manifest)),
                         generation=1, latest_revision=1, stable_revision=None, canary_percent=spec.canary_percent,
                         created_ms=now, updated_ms=now, uid=str(uuid.uuid4()),
                         resource_version=self._next_version(session),
                         managed_fields=json.dumps(managed_fields) if managed_fields else None)
        session.add(row)
        session.flush()
        session.add(RevisionRow(service_id=row.id, number=1, predictor=spec.predictor.to_json(), created_ms=now))
        session.flush()
        return self._record(session, row)

    def _update(self, session: Any, row: ServiceRow, spec: InferenceServiceSpec,
                managed_fields: list[dict[str, Any]] | None) -> tuple[ServiceRecord, bool]:
        spec = keep_mode(json.loads(row.manifest), spec)
        now = now_ms()
        revisions = self._revisions(session, row.id)
        created = revisions[row.latest_revision] != spec.predictor
        if created and hpa_only(json.loads(row.manifest), spec, revisions[row.latest_revision]):
            created = False  # Standard mode: the HPA is updated, the running revision keeps its replicas
            session.execute(update(RevisionRow).where(RevisionRow.service_id == row.id,
                                                      RevisionRow.number == row.latest_revision)
                            .values(predictor=spec.predictor.to_json()))
        elif created:
            number = max(revisions) + 1
            session.add(RevisionRow(service_id=row.id, number=number, predictor=spec.predictor.to_json(),
                                    created_ms=now))
            row.latest_revision = number
        manifest = _stored(spec.manifest)
        if json.loads(row.manifest).get("spec") != manifest.get("spec"):
            row.generation += 1
        row.manifest = json.dumps(manifest)
        row.canary_percent = spec.canary_percent
        if managed_fields is not None:
            row.managed_fields = json.dumps(managed_fields) if managed_fields else None
        row.updated_ms = now
        row.resource_version = self._next_version(session)
        session.flush()
        return self._record(session, row), created

    @staticmethod
    def _next_version(session: Any) -> int:
        """The counter row's next value, in the caller's (write) transaction."""
        if session.execute(update(CounterRow).where(CounterRow.id == 1)
                           .values(value=CounterRow.value + 1)).rowcount == 0:
            session.add(CounterRow(id=1, value=1))
            session.flush()
        return int(session.scalars(select(CounterRow.value).where(CounterRow.id == 1)).one())

    def get(self, namespace: str, name: str) -> ServiceRecord:
        with self.db.read() as session:
            row = self._row(session, namespace, name)
            if row is None:
                raise _not_found(namespace, name)
            return self._record(session, row)

    def list(self) -> list[ServiceRecord]:
        with self.db.read() as session:
            rows = session.scalars(select(ServiceRow).order_by(ServiceRow.namespace, ServiceRow.name)).all()
            return [self._record(session, row) for row in rows]

    def delete(self, namespace: str, name: str, resource_version: str | None = None) -> int:
        """Remove it; returns the resourceVersion of the deletion (for the DELETED watch event)."""
        with self.db.write() as session:
            row = self._row(session, namespace, name)
            if row is None:
                raise _not_found(namespace, name)
            if resource_version not in (None, "") and str(row.resource_version) != str(resource_version):
                raise stale(name, str(resource_version), row.resource_version)
            for revision in session.scalars(select(RevisionRow).where(RevisionRow.service_id == row.id)):
                session.delete(revision)
            session.delete(row)
            return self._next_version(session)

    # --- namespaces ----------------------------------------------------------------------
    def namespaces(self) -> Sequence[NamespaceRow]:
        with self.db.read() as session:
            return list(session.scalars(select(NamespaceRow).order_by(NamespaceRow.name)).all())

    def create_namespace(self, name: str, labels: dict[str, str]) -> NamespaceRow:
        with self.db.write() as session:
            if session.get(NamespaceRow, name) is not None:
                raise already_exists(name, kind="namespaces", group="")
            row = NamespaceRow(name=name, uid=str(uuid.uuid4()), resource_version=self._next_version(session),
                               labels=json.dumps(labels), created_ms=now_ms())
            session.add(row)
            session.flush()
            return row

    def promote(self, namespace: str, name: str, number: int | None = None) -> ServiceRecord:
        """Roll the latest revision out to 100%: it becomes the stable one and the canary ends."""
        with self.db.write() as session:
            row = self._row(session, namespace, name)
            if row is None:
                raise _not_found(namespace, name)
            if number is not None and number != row.latest_revision:
                return self._record(session, row)  # a newer revision arrived meanwhile: nothing to do
            row.stable_revision = row.latest_revision
            row.canary_percent = None
            manifest = json.loads(row.manifest)
            if manifest.get("spec", {}).get("predictor", {}).pop("canaryTrafficPercent", None) is not None:
                row.generation += 1  # the spec changed: the canary percent is gone
            row.manifest = json.dumps(manifest)
            row.updated_ms = now_ms()
            row.resource_version = self._next_version(session)
            return self._record(session, row)

    def rollback(self, namespace: str, name: str) -> ServiceRecord:
        """Send all traffic back to the stable revision; the canary revision stays in the history."""
        with self.db.write() as session:
            row = self._row(session, namespace, name)
            if row is None:
                raise _not_found(namespace, name)
            if row.stable_revision is None or row.stable_revision == row.latest_revision:
                raise Conflict(f"InferenceService {namespace}/{name} has no earlier rolled-out revision to roll "
                               "back to; it serves revision "
                               f"{revision_name(name, row.latest_revision)} only.")
            row.latest_revision = row.stable_revision
            row.canary_percent = None
            row.updated_ms = now_ms()
            row.resource_version = self._next_version(session)
            return self._record(session, row)

    @staticmethod
    def _row(session: Session, namespace: str, name: str) -> ServiceRow | None:
        return session.scalars(select(ServiceRow).where(ServiceRow.namespace == namespace,
                                                        ServiceRow.name == name)).first()

    @staticmethod
    def _revisions(session: Any, service_id: int) -> dict[int, PredictorSpec]:
        rows = session.scalars(select(RevisionRow).where(RevisionRow.service_id == service_id)).all()
        return {r.number: PredictorSpec.from_json(r.predictor) for r in rows}

    def _record(self, session: Any, row: ServiceRow) -> ServiceRecord:
        return ServiceRecord(namespace=row.namespace, name=row.name, manifest=json.loads(row.manifest),
                             generation=row.generation, latest=row.latest_revision, stable=row.stable_revision,
                             canary_percent=row.canary_percent, revisions=self._revisions(session, row.id),
                             created_ms=row.created_ms, uid=row.uid or "",
                             resource_version=row.resource_version,
                             managed_fields=json.loads(row.managed_fields) if row.managed_fields else [])


def keep_mode(current: dict[str, Any], spec: InferenceServiceSpec) -> InferenceServiceSpec:
    """``spec`` updating ``current`` (a manifest) in the deployment mode it was created in
    (:func:`kfbox.serving.scaling_spec.kept_mode`); another mode is refused as a 422 naming the annotation."""
    try:
        mode = kept_mode(current, spec.manifest)
    except InvalidInput as exc:
        raise invalid(spec.name, exc.message, f"metadata.annotations[{MODE_ANNOTATION}]") from exc
    return spec if mode is None else spec.with_mode(mode)


HPA_FIELDS = ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget")
"""The predictor's fields KServe's raw reconciler writes into the HorizontalPodAutoscaler (its ``createHPA`` and
``getHPAMetrics``) and nowhere in the Deployment's pod template."""


def hpa_only(current: dict[str, Any], spec: InferenceServiceSpec, latest: PredictorSpec) -> bool:
    """Whether ``spec`` (in its kept mode) differs from ``current`` (a stored manifest whose latest revision is
    ``latest``) only in :data:`HPA_FIELDS`, in Standard mode: the new manifest with those fields as they are in
    ``current`` makes the latest revision again. On a cluster such a change updates the HPA in place, with no new
    ReplicaSet. In Knative mode the same fields are annotations of the revision template: a new revision there."""
    if deployment_mode(annotations_of(spec.manifest)) != STANDARD:
        return False
    old = (current.get("spec") or {}).get("predictor") or {}
    new_spec = spec.manifest.get("spec") or {}
    predictor = {k: v for k, v in (new_spec.get("predictor") or {}).items() if k not in HPA_FIELDS}
    predictor.update({k: old[k] for k in HPA_FIELDS if k in old})
    try:
        before = InferenceServiceSpec.parse({**spec.manifest, "spec": {**new_spec, "predictor": predictor}},
                                            default_namespace=spec.namespace)
    except InvalidInput:  # the old bounds do not fit the new manifest: compare as a new revision would
        return False
    return before.predictor == latest


def _stored(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest without ``status`` and server-owned metadata (those are computed on read)."""
    clean = {k: v for k, v in manifest.items() if k != "status"}
    clean["metadata"] = {k: v for k, v in (manifest.get("metadata") or {}).items() if k not in SERVER_METADATA}
    return clean
