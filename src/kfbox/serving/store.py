"""Persistence of InferenceServices and their revisions: the source of truth across restarts."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from sqlalchemy import select

from kfbox.db import Database
from kfbox.errors import Conflict, NotFound
from kfbox.serving.spec import InferenceServiceSpec, PredictorSpec
from kfbox.serving.tables import RevisionRow, ServiceRow


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
    created_at: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def revision_name(name: str, number: int) -> str:
    """KServe's naming: ``<isvc>-predictor-00001``."""
    return f"{name}-predictor-{number:05d}"


def _not_found(namespace: str, name: str) -> NotFound:
    return NotFound(f"InferenceService {namespace}/{name} does not exist. List them with: kfbox serve list")


class ServingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def apply(self, spec: InferenceServiceSpec) -> tuple[ServiceRecord, bool]:
        """Create or update; a changed predictor makes a new revision. Returns (record, new revision?)."""
        now = time.time()
        manifest = json.dumps(spec.manifest)
        with self.db.write() as session:
            row = self._row(session, spec.namespace, spec.name)
            if row is None:
                row = ServiceRow(namespace=spec.namespace, name=spec.name, manifest=manifest, generation=1,
                                 latest_revision=1, stable_revision=None, canary_percent=spec.canary_percent,
                                 created_at=now, updated_at=now)
                session.add(row)
                session.flush()
                session.add(RevisionRow(service_id=row.id, number=1, predictor=spec.predictor.to_json(),
                                        created_at=now))
                created = True
            else:
                revisions = self._revisions(session, row.id)
                created = revisions[row.latest_revision] != spec.predictor
                if created:
                    number = max(revisions) + 1
                    session.add(RevisionRow(service_id=row.id, number=number, predictor=spec.predictor.to_json(),
                                            created_at=now))
                    row.latest_revision = number
                row.manifest = manifest
                row.canary_percent = spec.canary_percent
                row.generation += 1
                row.updated_at = now
            session.flush()
            return self._record(session, row), created

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

    def delete(self, namespace: str, name: str) -> None:
        with self.db.write() as session:
            row = self._row(session, namespace, name)
            if row is None:
                raise _not_found(namespace, name)
            for revision in session.scalars(select(RevisionRow).where(RevisionRow.service_id == row.id)):
                session.delete(revision)
            session.delete(row)

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
            manifest.get("spec", {}).get("predictor", {}).pop("canaryTrafficPercent", None)
            row.manifest = json.dumps(manifest)
            row.updated_at = time.time()
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
            row.updated_at = time.time()
            return self._record(session, row)

    @staticmethod
    def _row(session: Any, namespace: str, name: str) -> ServiceRow | None:
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
                             created_at=row.created_at)
