"""The registry subsystem: mounts the Model Registry API and offers :class:`Registry` to others.

Other subsystems reach it as ``platform.services.registry``::

    registry = required(platform.services.registry, "registry")
    uri = registry.resolve_artifact_uri("iris", None)         # latest LIVE version's model artifact
    record = registry.record_deployment("iris-svc", "iris", "v1", runtime="sklearn")
    registry.set_deployment_state(record["inferenceService"]["id"], "UNDEPLOYED")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from http import HTTPStatus
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session
from starlette.applications import Starlette

from kfbox.apis import REGISTRY, REGISTRY_V1
from kfbox.db import Database
from kfbox.errors import InvalidInput, NotFound, Unavailable
from kfbox.names import normalize_name
from kfbox.registry import kinds, store
from kfbox.registry.paging import Paginator
from kfbox.registry.tables import Resource
from kfbox.server.auth import TokenAuth
from kfbox.server.direct_routes import DirectRoutes
from kfbox.server.platform import Platform
from kfbox.server.shortcut import Shortcut

T = TypeVar("T")
S = TypeVar("S", Connection, Session)
_STATUSES = {s.value for s in HTTPStatus}
DEFAULT_ENVIRONMENT = "kfbox"
_RETRIES = 5


class Registry:
    """Transactions with retry, plus the calls the serving subsystem makes.

    :meth:`read` and :meth:`write` give a Core connection (the store's reads and inserts: a
    registration), :meth:`edit` an ORM session (a change to a loaded row: PATCH, deployments).
    """

    def __init__(self, db: Database, paginator: Paginator | None = None) -> None:
        self.db = db
        self.paginator = paginator or Paginator()

    def read(self, fn: Callable[[Connection], T]) -> T:
        with self.db.read_core() as conn:
            return fn(conn)

    def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a write transaction on a Core connection, retrying deadlocks/serialization failures."""
        return _retrying(self.db.write_core, fn)

    def edit(self, fn: Callable[[Session], T]) -> T:
        """As :meth:`write`, with an ORM session: for changes to rows it loads (:func:`store.update`)."""
        return _retrying(self.db.write, fn)

    def resolve_artifact_uri(self, model_name: str, version_name: str | None = None) -> str:
        """The model artifact URI of ``model_name``/``version_name`` (None = latest LIVE version).

        This is what ``model-registry://MODEL[/VERSION]`` means; raises NotFound with the next step.
        """
        def resolve(conn: Connection) -> str:
            version = self._version(conn, model_name, version_name)
            artifact = conn.execute(store.select_records().where(
                Resource.family == "artifact", Resource.kind == "model-artifact", Resource.scope == version.id,
            ).order_by(Resource.id.desc()).limit(1)).first()
            uri = artifact.attrs.get("uri") if artifact is not None else None
            if not uri:
                raise NotFound(f"Version {version.name!r} of model {model_name!r} has no model artifact with a URI. "
                               f"Register one with ModelRegistry.register_model({model_name!r}, uri, ...).")
            return str(uri)
        return self.read(resolve)

    def record_deployment(self, name: str, model_name: str, version_name: str | None = None, *,
                          runtime: str | None = None, environment: str = DEFAULT_ENVIRONMENT) -> dict[str, Any]:
        """Create or update the InferenceService ``name`` serving that version, and add a ServeModel.

        Returns ``{"inferenceService": {...}, "serveModel": {...}}`` in API (wire) form.
        """
        def record(session: Session) -> dict[str, Any]:
            conn = session.connection()
            version = self._version(conn, model_name, version_name)
            env = _get_or_create(conn, kinds.SERVING_ENVIRONMENT, "serving_environment", environment, None)
            fields: dict[str, Any] = {"name": name, "registeredModelId": str(version.parent_id),
                                      "modelVersionId": str(version.id), "desiredState": "DEPLOYED"}
            if runtime:
                fields["runtime"] = runtime
            existing = session.scalars(select(Resource).where(
                Resource.family == "inference_service", Resource.scope == env.id, Resource.name == name)).first()
            service: store.Record
            if existing is None:
                service = store.create(conn, kinds.INFERENCE_SERVICE, fields, parent=env)
            else:
                fields.pop("name")
                fields.pop("registeredModelId")
                store.update(session, existing, fields)
                existing.attrs = {**existing.attrs, "registeredModelId": str(version.parent_id)}
                service = existing
            serve = store.create(conn, kinds.SERVE_MODEL, {"modelVersionId": str(version.id),
                                                              "lastKnownState": "RUNNING"}, parent=service)
            return {"inferenceService": store.to_wire(kinds.INFERENCE_SERVICE, service),
                    "serveModel": store.to_wire(kinds.SERVE_MODEL, serve)}
        return self.edit(record)

    def set_deployment_state(self, inference_service_id: str, desired_state: str,
                             serve_state: str | None = None) -> dict[str, Any]:
        """Mark an InferenceService DEPLOYED/UNDEPLOYED (and its latest ServeModel's state)."""
        if desired_state not in ("DEPLOYED", "UNDEPLOYED"):
            raise InvalidInput(f"desired state {desired_state!r} is not DEPLOYED or UNDEPLOYED.")

        def change(session: Session) -> dict[str, Any]:
            service = store.get(session, "inference_service", inference_service_id)
            store.update(session, service, {"desiredState": desired_state})
            if serve_state:
                serve = session.scalars(select(Resource).where(Resource.family == "serve_model",
                                                               Resource.scope == service.id)
                                        .order_by(Resource.id.desc()).limit(1)).first()
                if serve is not None:
                    store.update(session, serve, {"lastKnownState": serve_state})
            return store.to_wire(kinds.INFERENCE_SERVICE, service)
        return self.edit(change)

    def _version(self, conn: Connection, model_name: str, version_name: str | None) -> store.Record:
        model_name, version_name = normalize_name(model_name), normalize_name(version_name)
        model = conn.execute(store.select_records().where(Resource.family == "registered_model", Resource.scope == 0,
                                                          Resource.name == model_name)).first()
        if model is None:
            raise NotFound(f"Model {model_name!r} not found. List models with: kfbox models list")
        stmt = store.select_records().where(Resource.family == "model_version", Resource.scope == model.id)
        if version_name is None:
            stmt = stmt.where(Resource.state == "LIVE").order_by(Resource.created_ms.desc(), Resource.id.desc())
        else:
            stmt = stmt.where(Resource.name == version_name)
        version = conn.execute(stmt.limit(1)).first()
        if version is None:
            what = f"no version {version_name!r}" if version_name else "no LIVE version"
            raise NotFound(f"Model {model_name!r} has {what}. List versions with: kfbox models show {model_name}")
        return cast(store.Record, version)


def _get_or_create(conn: Connection, kind: kinds.Kind, family: str, name: str,
                   parent: store.Record | None) -> store.Record:
    name = normalize_name(name)
    row = conn.execute(store.select_records().where(Resource.family == family, Resource.name == name,
                                                    Resource.scope == (parent.id if parent else 0))).first()
    return cast(store.Record, row) if row is not None else store.create(conn, kind, {"name": name}, parent=parent)


def _retrying(transaction: Callable[[], AbstractContextManager[S]], fn: Callable[[S], T]) -> T:
    """``fn`` in ``transaction()``, again after a deadlock or serialization failure (PostgreSQL, MySQL)."""
    for attempt in range(_RETRIES):
        try:
            with transaction() as handle:
                return fn(handle)
        except DBAPIError as exc:
            if not _retryable(exc) or attempt == _RETRIES - 1:
                if isinstance(exc, OperationalError):
                    raise Unavailable(f"The registry database is busy or unreachable: {exc.orig}. "
                                      "Retry the request.") from exc
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


def _retryable(exc: DBAPIError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in ("40001", "40P01"):
        return True
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] in (1205, 1213)


PREFIXES = ((REGISTRY_V1, False), (REGISTRY, True))


def error_body(status: int, message: str) -> dict[str, Any]:
    """Upstream's ``Error``: ``code`` is the status text (``"Not Found"``); its 422s say ``"Bad Request"``."""
    code = HTTPStatus.BAD_REQUEST if status == 422 else HTTPStatus(status) if status in _STATUSES else None
    return {"code": code.phrase if code is not None else str(status), "message": message}


def install(app: Starlette, platform: Platform) -> None:
    from kfbox.registry.router import RegistryRoutes

    registry = Registry(platform.db)
    platform.services.registry = registry
    platform.error_renderers.append(("/api/model_registry/", error_body))
    # each prefix serves upstream's document at <prefix>/openapi.json
    routes = [route for prefix, legacy in PREFIXES for route in RegistryRoutes(registry, prefix, legacy).routes]
    app.router.routes.extend(routes)
    # the server's protocol answers them below FastAPI's stack, through the same checks (kfbox.server.shortcut)
    direct = DirectRoutes(app, routes)
    platform.shortcuts.append(Shortcut(claims=direct.claims, app=TokenAuth(direct, platform)))
