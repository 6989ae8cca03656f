"""The entity kinds of the Model Registry API, declared once as data.

Every kind (RegisteredModel, ModelVersion, the five artifact types, ServingEnvironment,
InferenceService, ServeModel, Experiment, ExperimentRun) is a :class:`Kind`: which
family it belongs to (one name namespace per family and parent), which wire field holds
its state, which field names its parent, and its type-specific fields. The store, the
filters and the routes are built from these declarations; request bodies are checked
against upstream's document (:mod:`kfbox.registry.validation`), and a test keeps every field
that document accepts declared here, so none is accepted and then dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Text = str


class Number(float):
    """Marker type: a JSON number (integer or float, never a boolean or a string)."""

RegisteredModelState = Literal["LIVE", "ARCHIVED"]
ArtifactState = Literal["UNKNOWN", "PENDING", "LIVE", "MARKED_FOR_DELETION", "DELETED", "ABANDONED", "REFERENCE"]
InferenceServiceState = Literal["DEPLOYED", "UNDEPLOYED"]
ExecutionState = Literal["UNKNOWN", "NEW", "RUNNING", "COMPLETE", "FAILED", "CACHED", "CANCELED"]
ExperimentRunStatus = Literal["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]
ParameterType = Literal["string", "number", "boolean", "object"]


@dataclasses.dataclass(frozen=True)
class Field:
    """A type-specific field: stored in the ``attrs`` JSON column under its wire name."""

    wire: str
    type: Any = Text
    update: bool = True
    required: bool = False
    default: Any = None


@dataclasses.dataclass(frozen=True)
class Kind:
    """One entity kind as the API shows it."""

    name: str                      # "ModelVersion"
    family: str                    # uniqueness namespace and table discriminator group
    kind: str                      # stored discriminator ("model-artifact" for artifacts, else the family)
    fields: tuple[Field, ...] = ()
    state_field: str | None = None
    state_type: Any = None
    default_state: str | None = None
    parent_field: str | None = None  # wire field holding the parent id ("registeredModelId")
    parent_family: str | None = None
    name_required: bool = False
    refs: tuple[tuple[str, str], ...] = ()  # (wire field, family) of other ids it points at

    @property
    def is_artifact(self) -> bool:
        return self.family == "artifact"


_MODEL_SOURCE = tuple(Field(f"modelSource{part}") for part in ("Kind", "Class", "Group", "Id", "Name"))
# v1alpha3 clients attach artifacts to experiment runs through these two optional fields
_ARTIFACT_LINKS = (Field("experimentId", update=False), Field("experimentRunId", update=False))

REGISTERED_MODEL = Kind(
    "RegisteredModel", "registered_model", "registered_model",
    fields=(Field("readme"), Field("maturity"), Field("language", list[str]), Field("tasks", list[str]),
            Field("provider"), Field("logo"), Field("license"), Field("licenseLink"), Field("libraryName"),
            Field("owner")),
    state_field="state", state_type=RegisteredModelState, default_state="LIVE", name_required=True)

MODEL_VERSION = Kind(
    "ModelVersion", "model_version", "model_version", fields=(Field("author"),),
    state_field="state", state_type=RegisteredModelState, default_state="LIVE",
    parent_field="registeredModelId", parent_family="registered_model", name_required=True)

MODEL_ARTIFACT = Kind(
    "ModelArtifact", "artifact", "model-artifact",
    fields=(Field("modelFormatName"), Field("storageKey"), Field("storagePath"), Field("modelFormatVersion"),
            Field("serviceAccountName"), *_MODEL_SOURCE, Field("uri"), *_ARTIFACT_LINKS),
    state_field="state", state_type=ArtifactState, default_state="UNKNOWN")

DOC_ARTIFACT = Kind(
    "DocArtifact", "artifact", "doc-artifact", fields=(Field("uri"), *_ARTIFACT_LINKS),
    state_field="state", state_type=ArtifactState, default_state="UNKNOWN")

DATASET = Kind(
    "DataSet", "artifact", "dataset-artifact",
    fields=(Field("digest"), Field("sourceType"), Field("source"), Field("schema"), Field("profile"),
            Field("uri"), *_ARTIFACT_LINKS),
    state_field="state", state_type=ArtifactState, default_state="UNKNOWN")

METRIC = Kind(
    "Metric", "artifact", "metric",
    fields=(Field("value", Number), Field("timestamp"), Field("step"), *_ARTIFACT_LINKS),
    state_field="state", state_type=ArtifactState, default_state="UNKNOWN")

PARAMETER = Kind(
    "Parameter", "artifact", "parameter",
    fields=(Field("value"), Field("parameterType", ParameterType), *_ARTIFACT_LINKS),
    state_field="state", state_type=ArtifactState, default_state="UNKNOWN")

SERVING_ENVIRONMENT = Kind("ServingEnvironment", "serving_environment", "serving_environment", name_required=True)

INFERENCE_SERVICE = Kind(
    "InferenceService", "inference_service", "inference_service",
    fields=(Field("modelVersionId"), Field("runtime"), Field("registeredModelId", update=False, required=True)),
    state_field="desiredState", state_type=InferenceServiceState, default_state="DEPLOYED",
    parent_field="servingEnvironmentId", parent_family="serving_environment",
    refs=(("registeredModelId", "registered_model"), ("modelVersionId", "model_version")))

SERVE_MODEL = Kind(
    "ServeModel", "serve_model", "serve_model",
    fields=(Field("modelVersionId", update=False, required=True),),
    state_field="lastKnownState", state_type=ExecutionState, default_state="UNKNOWN",
    parent_family="inference_service", refs=(("modelVersionId", "model_version"),))

EXPERIMENT = Kind(
    "Experiment", "experiment", "experiment", fields=(Field("owner"),),
    state_field="state", state_type=RegisteredModelState, default_state="LIVE", name_required=True)

EXPERIMENT_RUN = Kind(
    "ExperimentRun", "experiment_run", "experiment_run",
    fields=(Field("endTimeSinceEpoch"), Field("status", ExperimentRunStatus, default="RUNNING"), Field("owner"),
            Field("startTimeSinceEpoch")),
    state_field="state", state_type=RegisteredModelState, default_state="LIVE",
    parent_field="experimentId", parent_family="experiment")

ARTIFACT_KINDS: dict[str, Kind] = {k.kind: k for k in (MODEL_ARTIFACT, DOC_ARTIFACT, DATASET, METRIC, PARAMETER)}
ALL_KINDS: tuple[Kind, ...] = (REGISTERED_MODEL, MODEL_VERSION, *ARTIFACT_KINDS.values(), SERVING_ENVIRONMENT,
                               INFERENCE_SERVICE, SERVE_MODEL, EXPERIMENT, EXPERIMENT_RUN)
BY_KIND: dict[str, Kind] = {k.kind: k for k in ALL_KINDS}
FAMILY_NAMES = {"registered_model": "registered model", "model_version": "model version", "artifact": "artifact",
                "serving_environment": "serving environment", "inference_service": "inference service",
                "serve_model": "serve model", "experiment": "experiment", "experiment_run": "experiment run"}
