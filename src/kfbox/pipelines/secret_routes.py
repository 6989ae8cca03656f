"""The routes and declared bodies of the secrets and config maps API (:mod:`kfbox.pipelines.secret_api`
mounts them when the first request under its prefix comes: a server start imports neither FastAPI nor pydantic)."""

from __future__ import annotations

from typing import Any, NotRequired

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only on Python >= 3.12

from kfbox.pipelines.schemas import Empty
from kfbox.pipelines.secret_values import Kind
from kfbox.pipelines.secrets import Entry, SecretStore
from kfbox.pipelines.views import timestamp

PATHS: dict[Kind, str] = {"secret": "secrets", "configmap": "configmaps"}


class EntryBody(BaseModel):
    """PUT body: the keys and values (the store checks names and size); ``merge`` keeps keys not sent."""

    model_config = ConfigDict(extra="forbid")
    data: dict[str, str] | None = None
    merge: bool = False


class EntryReply(TypedDict):
    """A secret or config map as replies show it: key names, never a secret's values."""

    name: str
    keys: list[str]
    created_at: str | None
    updated_at: str | None
    data: NotRequired[dict[str, str]]
    """A config map's data (GET of one config map only)."""


class SecretList(TypedDict):
    secrets: list[EntryReply]


class ConfigMapList(TypedDict):
    configmaps: list[EntryReply]


LISTS: dict[Kind, type[SecretList] | type[ConfigMapList]] = {"secret": SecretList, "configmap": ConfigMapList}


def entry(row: Entry) -> EntryReply:
    return {"name": row.name, "keys": row.keys, "created_at": timestamp(row.created_ms),
            "updated_at": timestamp(row.updated_ms)}


def build_router(store: SecretStore) -> APIRouter:
    router = APIRouter(tags=["secrets"])
    for kind, path in PATHS.items():
        _routes(router, store, kind, path)
    return router


def _routes(router: APIRouter, store: SecretStore, kind: Kind, path: str) -> None:
    @router.put(f"/{path}/{{name}}", name=f"set_{kind}", response_model=EntryReply)
    def set_entry(name: str, body: EntryBody) -> EntryReply:
        return entry(store.set(kind, name, body.data or {}, merge=body.merge))

    @router.get(f"/{path}", name=f"list_{kind}s", response_model=LISTS[kind])
    def list_entries() -> dict[str, Any]:
        return {path: [entry(r) for r in store.list(kind)]}

    @router.get(f"/{path}/{{name}}", name=f"get_{kind}", response_model=EntryReply)
    def get_entry(name: str) -> EntryReply:
        body = entry(store.describe(kind, name))
        if kind == "configmap":
            body["data"] = dict(store.get(kind, name))
        return body

    @router.delete(f"/{path}/{{name}}", name=f"delete_{kind}", response_model=Empty)
    def delete_entry(name: str) -> Empty:
        store.delete(kind, name)
        return {}
