"""Experiments, pipelines and pipeline versions: the catalogue runs refer to."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kfbox.clock import now_ms
from kfbox.db import Database
from kfbox.errors import Conflict, InvalidInput, NotFound
from kfbox.names import name_problem, normalize_name
from kfbox.pipelines import spec as specs
from kfbox.pipelines.listing import Fields, Listing
from kfbox.pipelines.tables import Experiment, Pipeline, PipelineVersion, Run

DEFAULT_EXPERIMENT = "Default"
EXPERIMENT_FIELDS: Fields = {"id": Experiment.id, "experiment_id": Experiment.id, "name": Experiment.display_name,
                             "display_name": Experiment.display_name, "created_at": Experiment.created_ms,
                             "storage_state": Experiment.storage_state, "namespace": Experiment.namespace,
                             "description": Experiment.description}
PIPELINE_FIELDS: Fields = {"id": Pipeline.id, "pipeline_id": Pipeline.id, "name": Pipeline.display_name,
                           "display_name": Pipeline.display_name, "created_at": Pipeline.created_ms,
                           "namespace": Pipeline.namespace, "description": Pipeline.description}
VERSION_FIELDS: Fields = {"id": PipelineVersion.id, "pipeline_version_id": PipelineVersion.id,
                          "name": PipelineVersion.display_name, "display_name": PipelineVersion.display_name,
                          "created_at": PipelineVersion.created_ms, "description": PipelineVersion.description}


def new_id() -> str:
    return str(uuid.uuid4())


def check_name(value: Any, what: str) -> str:
    """The display name in NFC: ``café`` typed as NFC or NFD is one pipeline/experiment (kfbox.names)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} display_name is required (a non-empty string); got {value!r}.")
    name = normalize_name(value)
    problem = name_problem(name)
    if problem is not None:
        raise InvalidInput(f"{what} display_name {name[:80]!r} {problem}.")
    return name


class Catalog:
    """Stores experiments, pipelines and versions; every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # experiments
    def create_experiment(self, name: Any, description: str = "", namespace: str = "") -> Experiment:
        name = check_name(name, "Experiment")
        row = Experiment(id=new_id(), display_name=name, description=description or "",
                         namespace=namespace or "", storage_state="AVAILABLE", created_ms=now_ms())
        try:
            with self.db.write() as s:
                s.add(row)
        except IntegrityError as exc:
            raise Conflict(f"Experiment {name!r} already exists. Runs can use it as it is; list them with: "
                           "kfbox runs list") from exc
        return row

    def default_experiment(self, session: Session) -> Experiment:
        row = session.scalars(select(Experiment).where(Experiment.display_name == DEFAULT_EXPERIMENT,
                                                       Experiment.namespace == "")).first()
        if row is None:
            row = Experiment(id=new_id(), display_name=DEFAULT_EXPERIMENT, description="", namespace="",
                             storage_state="AVAILABLE", created_ms=now_ms())
            session.add(row)
            session.flush()
        return row

    def get_experiment(self, experiment_id: str, session: Session | None = None) -> Experiment:
        if session is None:
            with self.db.read() as s:
                return self.get_experiment(experiment_id, s)
        row = session.get(Experiment, experiment_id)
        if row is None:
            raise NotFound(f"Experiment {experiment_id!r} does not exist. List experiments with: "
                           "GET /apis/v2beta1/experiments")
        return row

    def list_experiments(self, listing: Listing, namespace: str = "") -> tuple[list[Experiment], str, int]:
        with self.db.read() as s:
            return listing.apply(s, select(Experiment), EXPERIMENT_FIELDS)

    def set_experiment_state(self, experiment_id: str, state: str) -> None:
        with self.db.write() as s:
            self.get_experiment(experiment_id, s).storage_state = state
            if state == "ARCHIVED":
                for run in s.scalars(select(Run).where(Run.experiment_id == experiment_id)):
                    run.storage_state = "ARCHIVED"

    def delete_experiment(self, experiment_id: str) -> None:
        with self.db.write() as s:
            s.delete(self.get_experiment(experiment_id, s))

    # pipelines
    def create_pipeline(self, name: Any, description: str = "", namespace: str = "",
                        spec: dict[str, Any] | None = None, version_name: str | None = None) -> Pipeline:
        name = check_name(name, "Pipeline")
        row = Pipeline(id=new_id(), display_name=name, description=description or "", namespace=namespace or "",
                       created_ms=now_ms())
        try:
            with self.db.write() as s:
                s.add(row)
                s.flush()
                if spec is not None:
                    s.add(PipelineVersion(id=new_id(), pipeline_id=row.id, display_name=version_name or name,
                                          description=description or "", created_ms=row.created_ms,
                                          pipeline_spec=specs.normalise(spec)))
        except IntegrityError as exc:
            raise Conflict(f"Pipeline {name!r} already exists. Upload a new version of it instead "
                           "(POST /apis/v2beta1/pipelines/upload_version?pipelineid=...)") from exc
        return row

    def get_pipeline(self, pipeline_id: str, session: Session | None = None) -> Pipeline:
        if session is None:
            with self.db.read() as s:
                return self.get_pipeline(pipeline_id, s)
        row = session.get(Pipeline, pipeline_id)
        if row is None:
            raise NotFound(f"Pipeline {pipeline_id!r} does not exist. List pipelines with: "
                           "GET /apis/v2beta1/pipelines")
        return row

    def pipeline_by_name(self, name: str, namespace: str = "") -> Pipeline:
        with self.db.read() as s:
            row = s.scalars(select(Pipeline).where(Pipeline.display_name == normalize_name(name),
                                                   Pipeline.namespace == (namespace or ""))).first()
        if row is None:
            raise NotFound(f"No pipeline is named {name!r}. List pipelines with: GET /apis/v2beta1/pipelines")
        return row

    def list_pipelines(self, listing: Listing) -> tuple[list[Pipeline], str, int]:
        with self.db.read() as s:
            return listing.apply(s, select(Pipeline), PIPELINE_FIELDS)

    def delete_pipeline(self, pipeline_id: str) -> None:
        with self.db.write() as s:
            row = self.get_pipeline(pipeline_id, s)
            s.execute(delete(PipelineVersion).where(PipelineVersion.pipeline_id == pipeline_id))
            s.delete(row)

    # versions
    def create_version(self, pipeline_id: str, name: Any, spec: Any, description: str = "") -> PipelineVersion:
        name = check_name(name, "Pipeline version")
        row = PipelineVersion(id=new_id(), pipeline_id=pipeline_id, display_name=name,
                              description=description or "", created_ms=now_ms(),
                              pipeline_spec=specs.normalise(spec))
        try:
            with self.db.write() as s:
                self.get_pipeline(pipeline_id, s)
                s.add(row)
        except IntegrityError as exc:
            raise Conflict(f"Pipeline {pipeline_id!r} already has a version named {name!r}; "
                           "pick another name.") from exc
        return row

    def get_version(self, pipeline_id: str | None, version_id: str, session: Session | None = None
                    ) -> PipelineVersion:
        if session is None:
            with self.db.read() as s:
                return self.get_version(pipeline_id, version_id, s)
        row = session.get(PipelineVersion, version_id)
        if row is None or (pipeline_id and row.pipeline_id != pipeline_id):
            raise NotFound(f"Pipeline version {version_id!r} does not exist"
                           + (f" in pipeline {pipeline_id!r}" if pipeline_id else "")
                           + ". List versions with: GET /apis/v2beta1/pipelines/{pipeline_id}/versions")
        return row

    def latest_version(self, pipeline_id: str, session: Session) -> PipelineVersion:
        self.get_pipeline(pipeline_id, session)
        row = session.scalars(select(PipelineVersion).where(PipelineVersion.pipeline_id == pipeline_id)
                              .order_by(PipelineVersion.created_ms.desc())).first()
        if row is None:
            raise NotFound(f"Pipeline {pipeline_id!r} has no versions; upload one first.")
        return row

    def list_versions(self, pipeline_id: str, listing: Listing) -> tuple[list[PipelineVersion], str, int]:
        with self.db.read() as s:
            self.get_pipeline(pipeline_id, s)
            query = select(PipelineVersion).where(PipelineVersion.pipeline_id == pipeline_id)
            return listing.apply(s, query, VERSION_FIELDS)

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        with self.db.write() as s:
            s.delete(self.get_version(pipeline_id, version_id, s))
