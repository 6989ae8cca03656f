"""HTTP routes of the Model Registry API, thin over :mod:`kfbox.registry.store`.

The same router serves ``/api/model_registry/v1`` (client 0.3.15+) and, with
``legacy=True``, ``/api/model_registry/v1alpha3`` (older clients: also Experiments and
ExperimentRuns). Each collection gets the upstream quintet -- find (``/thing``), list,
create (201), get and PATCH (``/things/{id}``) -- plus the nested routes of the spec.
"""

# no ``from __future__ import annotations`` here: FastAPI reads the generated body models
# from the closures' annotations, which must be real classes, not strings.

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from kfbox.errors import InvalidInput
from kfbox.registry import kinds, schemas, store
from kfbox.registry.filters import parse_filter
from kfbox.registry.kinds import Kind
from kfbox.registry.service import Registry
from kfbox.registry.tables import Resource

TAG = "ModelRegistryService"


@dataclasses.dataclass(frozen=True)
class Collection:
    plural: str
    singular: str
    family: str
    kind: Kind                          # the kind POST creates / filters are parsed for
    kinds: tuple[str, ...] | None       # restrict to these kinds (None: the whole family)
    create_body: Any
    update_body: Any


def _collections(legacy: bool) -> list[Collection]:
    c, u = schemas.CREATE, schemas.UPDATE
    out = [
        Collection("registered_models", "registered_model", "registered_model", kinds.REGISTERED_MODEL, None,
                   c["registered_model"], u["registered_model"]),
        Collection("model_versions", "model_version", "model_version", kinds.MODEL_VERSION, None,
                   c["model_version"], u["model_version"]),
        Collection("model_artifacts", "model_artifact", "artifact", kinds.MODEL_ARTIFACT, ("model-artifact",),
                   c["model-artifact"], u["model-artifact"]),
        Collection("artifacts", "artifact", "artifact", kinds.MODEL_ARTIFACT, None,
                   schemas.ArtifactCreate, schemas.ArtifactUpdate),
        Collection("serving_environments", "serving_environment", "serving_environment", kinds.SERVING_ENVIRONMENT,
                   None, c["serving_environment"], u["serving_environment"]),
        Collection("inference_services", "inference_service", "inference_service", kinds.INFERENCE_SERVICE, None,
                   c["inference_service"], u["inference_service"]),
    ]
    if legacy:
        out += [
            Collection("experiments", "experiment", "experiment", kinds.EXPERIMENT, None,
                       c["experiment"], u["experiment"]),
            Collection("experiment_runs", "experiment_run", "experiment_run", kinds.EXPERIMENT_RUN, None,
                       c["experiment_run"], u["experiment_run"]),
        ]
    return out


def _reply(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _kind_of_body(body: BaseModel, default: Kind) -> Kind:
    artifact_type = getattr(body, "f_artifactType", None)
    return kinds.ARTIFACT_KINDS[artifact_type] if artifact_type else default


def _artifact_types(artifact_type: str | None) -> tuple[str, ...] | None:
    if artifact_type is None or artifact_type == "":
        return None
    if artifact_type not in kinds.ARTIFACT_KINDS:
        raise InvalidInput(f"artifactType {artifact_type!r} is not one of: " + ", ".join(kinds.ARTIFACT_KINDS))
    return (artifact_type,)


class _Lister:
    """Shared list logic: paging parameters, filterQuery, name/externalId narrowing."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def __call__(self, scope: str, family: str, kind: Kind, *, kinds_: Sequence[str] | None = None,
                 parent: int | None = None, filter_query: str | None = None, name: str | None = None,
                 external_id: str | None = None, page_size: str | None = None, order_by: str | None = None,
                 sort_order: str | None = None, token: str | None = None,
                 extra: Sequence[ColumnElement[bool]] = ()) -> JSONResponse:
        key = "\x1f".join((scope, str(parent), filter_query or "", name or "", external_id or "",
                           ",".join(kinds_ or ())))
        page = self.registry.paginator.page(page_size, order_by, sort_order, token, key)
        where: list[ColumnElement[bool] | None] = [parse_filter(filter_query, kind), *extra]
        if name is not None:
            where.append(Resource.name == name)
        if external_id is not None:
            where.append(Resource.external_id == external_id)
        return _reply(self.registry.read(lambda s: store.list_page(
            s, family, page, self.registry.paginator, where=where, kinds=kinds_, parent=parent)))


def require_json(request: Request) -> None:
    """Bodies must be JSON: a text/plain or form body is a 400 that says so."""
    if request.method in ("POST", "PATCH", "PUT"):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json" and not content_type.endswith("+json"):
            raise InvalidInput(f"Content-Type {content_type or '(none)'!r} is not accepted; send the body as "
                               "JSON with 'Content-Type: application/json'.")


def build_router(registry: Registry, legacy: bool = False) -> APIRouter:
    router = APIRouter(tags=[TAG], dependencies=[Depends(require_json)])
    lister = _Lister(registry)
    if legacy:
        _metric_history_routes(router, registry, lister)
    for collection in _collections(legacy):
        _collection_routes(router, registry, lister, collection)
    _nested_routes(router, registry, lister, legacy)
    return router


def _collection_routes(router: APIRouter, registry: Registry, lister: _Lister, col: Collection) -> None:
    CreateBody, UpdateBody = col.create_body, col.update_body

    def find(name: str | None = None, externalId: str | None = None,
             parentResourceId: str | None = None) -> JSONResponse:
        def run(s: Session) -> dict[str, Any]:
            row = store.find(s, col.family, name=name, external_id=externalId, parent=parentResourceId,
                             kinds=col.kinds)
            return store.to_wire(store.kind_of(row), row)
        return _reply(registry.read(run))

    def list_(filterQuery: str | None = None, pageSize: str | None = None, orderBy: str | None = None,
              sortOrder: str | None = None, nextPageToken: str | None = None,
              artifactType: str | None = None) -> JSONResponse:
        kinds_ = col.kinds if col.kinds is not None else (
            _artifact_types(artifactType) if col.family == "artifact" else None)
        return lister(col.plural, col.family, col.kind, kinds_=kinds_, filter_query=filterQuery,
                      page_size=pageSize, order_by=orderBy, sort_order=sortOrder, token=nextPageToken)

    def create(body: CreateBody) -> JSONResponse:  # type: ignore[valid-type]
        kind = _kind_of_body(body, col.kind)

        def run(s: Session) -> dict[str, Any]:
            return store.to_wire(kind, store.create(s, kind, schemas.to_fields(body)))
        return _reply(registry.write(run), 201)

    def get(id: str) -> JSONResponse:
        def run(s: Session) -> dict[str, Any]:
            row = store.get(s, col.family, id, col.kinds)
            return store.to_wire(store.kind_of(row), row)
        return _reply(registry.read(run))

    def patch(id: str, body: UpdateBody) -> JSONResponse:  # type: ignore[valid-type]
        def run(s: Session) -> dict[str, Any]:
            row = store.get(s, col.family, id, col.kinds)
            row = store.update(s, row, schemas.to_fields(body))
            return store.to_wire(store.kind_of(row), row)
        return _reply(registry.write(run))

    name = col.kind.name if col.kinds is not None or col.family != "artifact" else "Artifact"
    router.add_api_route(f"/{col.singular}", find, methods=["GET"], summary=f"Find a {name} by name or externalId")
    router.add_api_route(f"/{col.plural}", list_, methods=["GET"], summary=f"List {name}s")
    router.add_api_route(f"/{col.plural}", create, methods=["POST"], status_code=201, summary=f"Create a {name}")
    router.add_api_route(f"/{col.plural}/{{id}}", get, methods=["GET"], summary=f"Get a {name}")
    router.add_api_route(f"/{col.plural}/{{id}}", patch, methods=["PATCH"], summary=f"Update a {name}")


def _child_routes(router: APIRouter, registry: Registry, lister: _Lister, *, path: str, parent_family: str,
                  child: Kind, body_type: Any, upsert: bool = False, op: str) -> None:
    """``GET/POST /parents/{id}/children``: list children, create one under the parent."""
    BodyType = body_type

    def list_children(id: str, name: str | None = None, externalId: str | None = None,
                      filterQuery: str | None = None, pageSize: str | None = None, orderBy: str | None = None,
                      sortOrder: str | None = None, nextPageToken: str | None = None,
                      artifactType: str | None = None) -> JSONResponse:
        parent = registry.read(lambda s: store.get(s, parent_family, id))
        kinds_ = _artifact_types(artifactType) if child.is_artifact else None
        return lister(path, child.family, child, kinds_=kinds_, parent=parent.id, filter_query=filterQuery,
                      name=name, external_id=externalId, page_size=pageSize, order_by=orderBy,
                      sort_order=sortOrder, token=nextPageToken)

    def create_child(id: str, body: BodyType) -> JSONResponse:  # type: ignore[valid-type]
        kind = _kind_of_body(body, child)
        fields = schemas.to_fields(body)
        created = True

        def run(s: Session) -> dict[str, Any]:
            nonlocal created
            parent = store.get(s, parent_family, id)
            if upsert and fields.get("id") is not None:
                row = store.get(s, child.family, fields["id"])
                created = False
                if store.kind_of(row).kind != kind.kind:
                    raise InvalidInput(f"Artifact {row.id} is a {row.kind}, not a {kind.kind}.")
                rest = {k: v for k, v in fields.items() if k not in ("id", "name")}
                row = store.attach(s, store.update(s, row, rest), parent)
            else:
                row = store.create(s, kind, fields, parent=parent)
            return store.to_wire(kind, row)
        result = registry.write(run)
        return _reply(result, 201 if created else 200)

    router.add_api_route(path, list_children, methods=["GET"])
    router.add_api_route(path, create_child, methods=["POST"], status_code=201)


def _nested_routes(router: APIRouter, registry: Registry, lister: _Lister, legacy: bool) -> None:
    _child_routes(router, registry, lister, path="/registered_models/{id}/versions", parent_family="registered_model",
                  child=kinds.MODEL_VERSION, body_type=schemas.FULL["model_version"], op="registered_model_versions")
    _child_routes(router, registry, lister, path="/model_versions/{id}/artifacts", parent_family="model_version",
                  child=kinds.MODEL_ARTIFACT, body_type=schemas.Artifact, upsert=True,
                  op="model_version_artifacts")
    _child_routes(router, registry, lister, path="/serving_environments/{id}/inference_services",
                  parent_family="serving_environment", child=kinds.INFERENCE_SERVICE,
                  body_type=schemas.CREATE["inference_service"], op="environment_inference_services")
    _child_routes(router, registry, lister, path="/inference_services/{id}/serves", parent_family="inference_service",
                  child=kinds.SERVE_MODEL, body_type=schemas.CREATE["serve_model"], op="inference_service_serves")
    if legacy:
        _child_routes(router, registry, lister, path="/experiments/{id}/experiment_runs", parent_family="experiment",
                      child=kinds.EXPERIMENT_RUN, body_type=schemas.FULL["experiment_run"],
                      op="experiment_experiment_runs")
        _child_routes(router, registry, lister, path="/experiment_runs/{id}/artifacts",
                      parent_family="experiment_run", child=kinds.MODEL_ARTIFACT, body_type=schemas.Artifact,
                      upsert=True, op="experiment_run_artifacts")

    def linked(ref: str, family: str, kind: Kind) -> Callable[[str], JSONResponse]:
        def get_linked(id: str) -> JSONResponse:
            def run(s: Session) -> dict[str, Any]:
                service = store.get(s, "inference_service", id)
                target = service.attrs.get(ref)
                if not target:
                    raise InvalidInput(f"InferenceService {service.id} has no {ref}.")
                return store.to_wire(kind, store.get(s, family, target))
            return _reply(registry.read(run))
        return get_linked

    router.add_api_route("/inference_services/{id}/model", linked("registeredModelId", "registered_model",
                                                                   kinds.REGISTERED_MODEL), methods=["GET"])
    router.add_api_route("/inference_services/{id}/version", linked("modelVersionId", "model_version",
                                                                     kinds.MODEL_VERSION), methods=["GET"])


def _metric_history_routes(router: APIRouter, registry: Registry, lister: _Lister) -> None:
    """v1alpha3 metric history: the Metric artifacts of runs, optionally by name and steps."""

    def history(run_id: str | None, name: str | None, stepIds: str | None, filterQuery: str | None,
                pageSize: str | None, orderBy: str | None, sortOrder: str | None,
                nextPageToken: str | None) -> JSONResponse:
        parent = None
        if run_id is not None:
            parent = registry.read(lambda s: store.get(s, "experiment_run", run_id)).id
        extra: list[ColumnElement[bool]] = []
        if stepIds:
            steps = [part.strip() for part in stepIds.split(",") if part.strip()]
            if not all(step.lstrip("-").isdigit() for step in steps):
                raise InvalidInput(f"stepIds {stepIds!r} must be comma-separated whole numbers.")
            extra.append(Resource.attrs["step"].as_string().in_(steps))
        return lister(f"metric_history/{stepIds}", "artifact", kinds.METRIC, kinds_=("metric",), parent=parent,
                      filter_query=filterQuery, name=name, page_size=pageSize, order_by=orderBy,
                      sort_order=sortOrder, token=nextPageToken, extra=extra)

    def all_runs(name: str | None = None, stepIds: str | None = None, filterQuery: str | None = None,
                 pageSize: str | None = None, orderBy: str | None = None, sortOrder: str | None = None,
                 nextPageToken: str | None = None) -> JSONResponse:
        return history(None, name, stepIds, filterQuery, pageSize, orderBy, sortOrder, nextPageToken)

    def one_run(id: str, name: str | None = None, stepIds: str | None = None, filterQuery: str | None = None,
                pageSize: str | None = None, orderBy: str | None = None, sortOrder: str | None = None,
                nextPageToken: str | None = None) -> JSONResponse:
        return history(id, name, stepIds, filterQuery, pageSize, orderBy, sortOrder, nextPageToken)

    router.add_api_route("/experiment_runs/metric_history", all_runs, methods=["GET"])
    router.add_api_route("/experiment_runs/{id}/metric_history", one_run, methods=["GET"])
