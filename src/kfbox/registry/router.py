"""HTTP routes of the Model Registry API, thin over :mod:`kfbox.registry.store`.

The same routes serve ``/api/model_registry/v1`` (client 0.3.15+) and, with
``legacy=True``, ``/api/model_registry/v1alpha3`` (older clients: also Experiments and
ExperimentRuns). Each collection gets the upstream quintet -- find (``/thing``), list,
create (201), get and PATCH (``/things/{id}``) -- plus the nested routes of the spec.

Routes are plain Starlette routes: bodies are checked against upstream's OpenAPI document
(:mod:`.validation`, compiled on first use), which each prefix serves at ``openapi.json``
(:mod:`.spec`); the FastAPI/pydantic machinery for ~100 routes cost more start-up time than
the whole rest of the server.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kfbox.errors import InvalidInput
from kfbox.names import normalize_name
from kfbox.registry import kinds, loop, spec, store
from kfbox.registry.filters import parse_filter
from kfbox.registry.kinds import Kind
from kfbox.registry.tables import Resource
from kfbox.registry.validation import artifact_kind, parse_json, validate

if TYPE_CHECKING:  # service.py's install hook imports this module
    from kfbox.registry.service import Registry

Handler = Callable[[str | None, QueryParams, Any], tuple[int, Any]]


@dataclasses.dataclass(frozen=True)
class Collection:
    plural: str
    singular: str
    kind: Kind                          # what POST creates and filters are parsed for
    kinds: tuple[str, ...] | None       # restrict to these kinds (None: the whole family)
    polymorphic: bool = False           # bodies are Artifact oneOf, by artifactType

    @property
    def family(self) -> str:
        return self.kind.family

    @property
    def label(self) -> str:
        return "Artifact" if self.polymorphic else self.kind.name


def collections(legacy: bool) -> list[Collection]:
    out = [
        Collection("registered_models", "registered_model", kinds.REGISTERED_MODEL, None),
        Collection("model_versions", "model_version", kinds.MODEL_VERSION, None),
        Collection("model_artifacts", "model_artifact", kinds.MODEL_ARTIFACT, ("model-artifact",)),
        Collection("artifacts", "artifact", kinds.MODEL_ARTIFACT, None, polymorphic=True),
        Collection("serving_environments", "serving_environment", kinds.SERVING_ENVIRONMENT, None),
        Collection("inference_services", "inference_service", kinds.INFERENCE_SERVICE, None),
    ]
    if legacy:
        out += [Collection("experiments", "experiment", kinds.EXPERIMENT, None),
                Collection("experiment_runs", "experiment_run", kinds.EXPERIMENT_RUN, None)]
    return out


def _artifact_types(raw: str | None) -> tuple[str, ...] | None:
    if not raw:
        return None
    if raw not in kinds.ARTIFACT_KINDS:
        raise InvalidInput(f"artifactType {raw[:40]!r} is not one of: " + ", ".join(kinds.ARTIFACT_KINDS))
    return (raw,)


def _legacy_wire(payload: Any) -> Any:
    """v1alpha3 spells Metric.step as a JSON integer (int64); /v1 as a string, as each client expects."""
    for item in payload.get("items", [payload]) if isinstance(payload, dict) else ():
        step = item.get("step") if isinstance(item, dict) and item.get("artifactType") == "metric" else None
        if isinstance(step, str) and step.lstrip("-").isdigit():
            item["step"] = int(step)
    return payload


class RegistryRoutes:
    """Builds the routes for one API prefix."""

    def __init__(self, registry: Registry, prefix: str, legacy: bool) -> None:
        self.registry = registry
        self.prefix = prefix
        self.legacy = legacy
        self.routes: list[Route] = [Route(prefix + "/openapi.json", self._document, methods=["GET"],
                                          name="Model Registry OpenAPI document")]
        if legacy:
            self._metric_history()
        for collection in collections(legacy):
            self._collection(collection)
        self._nested()

    # -- plumbing -------------------------------------------------------------------------

    async def _document(self, request: Request) -> Response:
        request.scope["route"] = self.routes[0]
        document = await run_in_threadpool(_encoded, self.prefix)
        return Response(document, media_type="application/json")

    def add(self, method: str, path: str, handler: Handler, name: str, *, bounded: bool = True) -> None:
        """A route whose ``handler`` runs on the event loop where it can (``bounded``: one entity; see
        :mod:`.loop`), else in a worker thread (lists: a page can be 10,000 items)."""
        local = bounded and self.registry.db.local

        async def endpoint(request: Request) -> JSONResponse:
            # FastAPI's router labels only its own routes; the metrics middleware reads this
            request.scope["route"] = route
            if any("\x00" in value for _, value in request.query_params.multi_items()):
                raise InvalidInput("Query parameters must not contain NUL characters.")
            body = None
            if method in ("POST", "PATCH"):
                body = parse_json(await request.body(), request.headers.get("content-type"))
            status, payload = await loop.serve(local, handler, request.path_params.get("id"),
                                               request.query_params, body)
            if self.legacy:
                payload = _legacy_wire(payload)
            return JSONResponse(payload, status_code=status)

        route = Route(self.prefix + path, endpoint, methods=[method], name=name)
        self.routes.append(route)

    def list_page(self, scope: str, kind: Kind, query: QueryParams, *, kinds_: Sequence[str] | None = None,
                  parent: int | None = None, narrow: bool = False,
                  extra: Sequence[ColumnElement[bool]] = ()) -> dict[str, Any]:
        """Shared list logic: paging, filterQuery and (for nested lists) name/externalId."""
        filter_query = query.get("filterQuery")
        name = query.get("name") if narrow else None
        external_id = query.get("externalId") if narrow else None
        key = "\x1f".join((scope, str(parent), filter_query or "", name or "", external_id or "",
                           ",".join(kinds_ or ()), query.get("stepIds") or ""))
        page = self.registry.paginator.page(query.get("pageSize"), query.get("orderBy"), query.get("sortOrder"),
                                            query.get("nextPageToken"), key)
        where: list[ColumnElement[bool] | None] = [parse_filter(filter_query, kind), *extra]
        if name is not None:
            where.append(Resource.name == normalize_name(name))
        if external_id is not None:
            where.append(Resource.external_id == external_id)
        return self.registry.read(lambda s: store.list_page(s, kind.family, page, self.registry.paginator,
                                                            where=where, kinds=kinds_, parent=parent))

    # -- collections ----------------------------------------------------------------------

    def _collection(self, col: Collection) -> None:
        registry = self.registry

        def find(_: str | None, query: QueryParams, __: Any) -> tuple[int, Any]:
            def run(conn: Connection) -> dict[str, Any]:
                row = store.find(conn, col.family, name=query.get("name"), external_id=query.get("externalId"),
                                 parent=query.get("parentResourceId"), kinds=col.kinds)
                return store.to_wire(store.kind_of(row), row)
            return 200, registry.read(run)

        def list_(_: str | None, query: QueryParams, __: Any) -> tuple[int, Any]:
            kinds_ = col.kinds if not col.polymorphic else _artifact_types(query.get("artifactType"))
            return 200, self.list_page(col.plural, col.kind, query, kinds_=kinds_)

        def create(_: str | None, __: QueryParams, body: Any) -> tuple[int, Any]:
            kind = artifact_kind(body) if col.polymorphic else col.kind
            fields = validate(kind, "create", body)
            return 201, registry.write(lambda s: store.to_wire(kind, store.create(s, kind, fields)))

        def get(rid: str | None, _: QueryParams, __: Any) -> tuple[int, Any]:
            def run(conn: Connection) -> dict[str, Any]:
                row = store.read(conn, col.family, rid or "", col.kinds)
                return store.to_wire(store.kind_of(row), row)
            return 200, registry.read(run)

        def patch(rid: str | None, _: QueryParams, body: Any) -> tuple[int, Any]:
            store.parse_id(rid or "")

            def run(s: Session) -> dict[str, Any]:
                row = store.get(s, col.family, rid or "", col.kinds)
                kind = store.kind_of(row)
                row = store.update(s, row, validate(kind, "update", body))
                return store.to_wire(kind, row)
            return 200, registry.edit(run)

        label = col.label
        self.add("GET", f"/{col.singular}", find, f"Find a {label}")
        self.add("GET", f"/{col.plural}", list_, f"List {label}s", bounded=False)
        self.add("POST", f"/{col.plural}", create, f"Create a {label}")
        self.add("GET", f"/{col.plural}/{{id}}", get, f"Get a {label}")
        self.add("PATCH", f"/{col.plural}/{{id}}", patch, f"Update a {label}")

    # -- nested ---------------------------------------------------------------------------

    def _children(self, path: str, parent_family: str, child: Kind, variant: str, *, upsert: bool = False) -> None:
        """``GET/POST /parents/{id}/children``: list children, create (or attach) one under the parent."""
        registry = self.registry
        label = "Artifact" if child.is_artifact else child.name

        def list_children(rid: str | None, query: QueryParams, _: Any) -> tuple[int, Any]:
            parent = registry.read(lambda s: store.read(s, parent_family, rid or ""))
            kinds_ = _artifact_types(query.get("artifactType")) if child.is_artifact else None
            return 200, self.list_page(path, child, query, kinds_=kinds_, parent=parent.id, narrow=True)

        def create_child(rid: str | None, _: QueryParams, body: Any) -> tuple[int, Any]:
            store.parse_id(rid or "")
            kind = artifact_kind(body, None) if child.is_artifact else child
            fields = validate(kind, variant, body)

            def attach(s: Session) -> tuple[int, Any]:  # the upsert endpoints' "existing" case: a change
                parent = store.read(s.connection(), parent_family, rid or "")
                row = store.get(s, child.family, fields["id"])
                if row.kind != kind.kind:
                    raise InvalidInput(f"Artifact {row.id} is a {row.kind}, not a {kind.kind}.")
                rest = {k: v for k, v in fields.items() if k not in ("id", "name")}
                return 200, store.to_wire(kind, store.update(s, store.attach(s, row, parent), rest))

            def create(conn: Connection) -> tuple[int, Any]:
                parent = store.read(conn, parent_family, rid or "")
                return 201, store.to_wire(kind, store.create(conn, kind, fields, parent=parent))
            return registry.edit(attach) if upsert and fields.get("id") is not None else registry.write(create)

        self.add("GET", path, list_children, f"List the {label}s of a parent", bounded=False)
        self.add("POST", path, create_child, f"Create a {label} under a parent")

    def _nested(self) -> None:
        self._children("/registered_models/{id}/versions", "registered_model", kinds.MODEL_VERSION, "full")
        self._children("/model_versions/{id}/artifacts", "model_version", kinds.MODEL_ARTIFACT, "full", upsert=True)
        self._children("/serving_environments/{id}/inference_services", "serving_environment",
                       kinds.INFERENCE_SERVICE, "create")
        self._children("/inference_services/{id}/serves", "inference_service", kinds.SERVE_MODEL, "create")
        if self.legacy:
            self._children("/experiments/{id}/experiment_runs", "experiment", kinds.EXPERIMENT_RUN, "full")
            self._children("/experiment_runs/{id}/artifacts", "experiment_run", kinds.MODEL_ARTIFACT, "full",
                           upsert=True)
        for suffix, ref, family, kind in (("model", "registeredModelId", "registered_model", kinds.REGISTERED_MODEL),
                                          ("version", "modelVersionId", "model_version", kinds.MODEL_VERSION)):
            self.add("GET", f"/inference_services/{{id}}/{suffix}", self._linked(ref, family, kind),
                     f"Get the {kind.name} an InferenceService serves")

    def _linked(self, ref: str, family: str, kind: Kind) -> Handler:
        def get_linked(rid: str | None, _: QueryParams, __: Any) -> tuple[int, Any]:
            def run(conn: Connection) -> dict[str, Any]:
                service = store.read(conn, "inference_service", rid or "")
                target = service.attrs.get(ref)
                if not target:
                    raise InvalidInput(f"InferenceService {service.id} has no {ref}.")
                return store.to_wire(kind, store.read(conn, family, target))
            return 200, self.registry.read(run)
        return get_linked

    def _metric_history(self) -> None:
        """v1alpha3 metric history: the Metric artifacts of runs, optionally by name and steps."""
        registry = self.registry

        def history(rid: str | None, query: QueryParams, _: Any) -> tuple[int, Any]:
            parent = registry.read(lambda s: store.read(s, "experiment_run", rid)).id if rid is not None else None
            extra: list[ColumnElement[bool]] = []
            step_ids = query.get("stepIds")
            if step_ids:
                steps = [part.strip() for part in step_ids.split(",") if part.strip()]
                if not all(step.lstrip("-").isdigit() for step in steps):
                    raise InvalidInput(f"stepIds {step_ids[:60]!r} must be comma-separated whole numbers.")
                extra.append(Resource.attrs["step"].as_string().in_(steps))
            return 200, self.list_page("metric_history", kinds.METRIC, query, kinds_=("metric",), parent=parent,
                                       narrow=True, extra=extra)

        for path in ("/experiment_runs/metric_history", "/experiment_runs/{id}/metric_history"):
            self.add("GET", path, history, "Metric history of experiment runs", bounded=False)


@functools.cache
def _encoded(prefix: str) -> bytes:
    """The document served at ``prefix``, encoded once, on its first request."""
    return json.dumps(spec.served(prefix), separators=(",", ":")).encode()
