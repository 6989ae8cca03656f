"""kfbox's own API for secrets and config maps (a cluster keeps these in Kubernetes, not in KFP).

    PUT    /kfbox/v1/secrets/{name}      {"data": {"KEY": "VALUE"}, "merge": false}
    GET    /kfbox/v1/secrets             names and key names, never values
    GET    /kfbox/v1/secrets/{name}      name and key names, never values
    DELETE /kfbox/v1/secrets/{name}
    ... the same under /kfbox/v1/configmaps, where GET of one config map also returns its data.

Bodies and replies are declared (:mod:`kfbox.pipelines.secret_routes`, built by the first request under
the prefix; they are in /openapi.json);
a reply describes an :class:`~kfbox.pipelines.secrets.Entry`, and a secret's values are only read
by the engine, in the server, when a task starts. ``platform.services.secrets`` is the
:class:`~kfbox.pipelines.secrets.SecretStore`.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from kfbox.pipelines.secrets import SecretStore
from kfbox.server.lazy_routes import install_lazy
from kfbox.server.platform import Platform

PREFIX = "/kfbox/v1"


def install(app: Starlette, platform: Platform) -> None:
    store = SecretStore.from_settings(platform.db, platform.settings)
    platform.services.secrets = store

    def routes() -> list[BaseRoute]:  # built by the first request under the prefix: nothing at start-up
        from fastapi import APIRouter

        from kfbox.pipelines.secret_routes import build_router

        block = APIRouter()
        block.include_router(build_router(store), prefix=PREFIX)
        return list(block.routes)

    install_lazy(app, routes, prefixes=(PREFIX,))
