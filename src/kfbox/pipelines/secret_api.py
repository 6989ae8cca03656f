"""kfbox's own API for secrets and config maps (a cluster keeps these in Kubernetes, not in KFP).

    PUT    /kfbox/v1/secrets/{name}      {"data": {"KEY": "VALUE"}, "merge": false}
    GET    /kfbox/v1/secrets             names and key names, never values
    GET    /kfbox/v1/secrets/{name}      name and key names, never values
    DELETE /kfbox/v1/secrets/{name}
    ... the same under /kfbox/v1/configmaps, where GET of one config map also returns its data.

Replies describe an :class:`~kfbox.pipelines.secrets.Entry`; a secret's values are only read
by the engine, in the server, when a task starts. ``platform.services["secrets"]`` is the
:class:`~kfbox.pipelines.secrets.SecretStore`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, FastAPI

from kfbox.errors import InvalidInput
from kfbox.pipelines.secret_values import Kind
from kfbox.pipelines.secrets import Entry, SecretStore
from kfbox.pipelines.views import timestamp
from kfbox.server.platform import Platform

PREFIX = "/kfbox/v1"
PATHS: dict[Kind, str] = {"secret": "secrets", "configmap": "configmaps"}


def entry(row: Entry) -> dict[str, Any]:
    return {"name": row.name, "keys": row.keys, "created_at": timestamp(row.created_ms),
            "updated_at": timestamp(row.updated_ms)}


def build_router(store: SecretStore) -> APIRouter:
    router = APIRouter(tags=["secrets"])
    for kind, path in PATHS.items():
        _routes(router, store, kind, path)
    return router


def _routes(router: APIRouter, store: SecretStore, kind: Kind, path: str) -> None:
    @router.put(f"/{path}/{{name}}", name=f"set_{kind}")
    def set_entry(name: str, body: Any = Body(...)) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("merge", False), bool):
            raise InvalidInput('The body must be {"data": {"KEY": "VALUE", ...}, "merge": false}.')
        return entry(store.set(kind, name, body.get("data") or {}, merge=body.get("merge", False)))

    @router.get(f"/{path}", name=f"list_{kind}s")
    def list_entries() -> dict[str, Any]:
        return {path: [entry(r) for r in store.list(kind)]}

    @router.get(f"/{path}/{{name}}", name=f"get_{kind}")
    def get_entry(name: str) -> dict[str, Any]:
        body = entry(store.describe(kind, name))
        if kind == "configmap":
            body["data"] = dict(store.get(kind, name))
        return body

    @router.delete(f"/{path}/{{name}}", name=f"delete_{kind}")
    def delete_entry(name: str) -> dict[str, Any]:
        store.delete(kind, name)
        return {}


def install(app: FastAPI, platform: Platform) -> None:
    store = SecretStore.from_settings(platform.db, platform.settings)
    platform.services["secrets"] = store
    app.include_router(build_router(store), prefix=PREFIX)
