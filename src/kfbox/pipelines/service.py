"""Mounts the pipelines subsystem: the KFP API, the run queue, KFP-shaped errors.

``platform.services.pipelines`` is the :class:`PipelinesService`: other subsystems may
call ``create_run(body)``, ``runs.get(run_id)`` / ``runs.details(run_id)`` and
``supervisor.cancel(run_id)``.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from kfbox.apis import KFP_PREFIXES as PREFIXES
from kfbox.pipelines import views
from kfbox.pipelines.catalog import Catalog
from kfbox.pipelines.runs import RunStore
from kfbox.pipelines.supervisor import Supervisor
from kfbox.pipelines.tables import Run
from kfbox.server.lazy_routes import install_lazy
from kfbox.server.platform import Platform


class PipelinesService:
    def __init__(self, platform: Platform) -> None:
        self.catalog = Catalog(platform.db)
        self.runs = RunStore(platform.db, self.catalog, platform.settings.container_runtime, platform.settings)
        self.supervisor = Supervisor(platform.settings, self.runs, platform.metrics)

    def create_run(self, body: dict[str, Any]) -> Run:
        run = self.runs.create(body)
        self.supervisor.submit()
        return run


def install(app: Starlette, platform: Platform) -> None:
    service = PipelinesService(platform)
    platform.services.pipelines = service

    async def in_use() -> None:  # async: runs inline, no thread hop per request
        service.supervisor.touch()

    def routes() -> list[BaseRoute]:
        # the API's ~30 routes and their schemas, built by the first request under a KFP prefix
        # (~0.1 s that `kfbox up` no longer waits for)
        from fastapi import APIRouter, Depends

        from kfbox.pipelines.api import build_router

        router, block = build_router(service), APIRouter()
        for prefix in PREFIXES:
            block.include_router(router, prefix=prefix, dependencies=[Depends(in_use)])
        return list(block.routes)

    install_lazy(app, routes, prefixes=PREFIXES)
    for prefix in PREFIXES:
        platform.error_renderers.append((prefix.rsplit("/", 1)[0], views.error_body))
    platform.on_startup.append(service.supervisor.start)
    platform.on_shutdown.append(service.supervisor.stop)
