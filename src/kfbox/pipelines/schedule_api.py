"""The KFP v2beta1 ``recurringruns`` API (what ``kfp.Client.create_recurring_run`` and friends call).

Mounted beside the rest of the KFP API (``/apis/v2beta1`` and ``/pipeline/apis/v2beta1``), so
errors come back in KFP's shape. Bodies and replies are ``V2beta1RecurringRun`` as in ``kfp_server_api``,
declared in :mod:`kfbox.pipelines.schemas`; kfbox adds three read-only fields clients ignore:
``next_run_at``, ``last_run_at`` and ``run_ids`` (the newest runs the schedule started).

``install(app, platform)`` runs after :mod:`kfbox.pipelines.service` (it needs
``platform.services.pipelines``) and starts the :class:`~kfbox.pipelines.schedules.Scheduler`
with the server; ``platform.services.schedules`` is the :class:`ScheduleStore`.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from kfbox.apis import KFP_PREFIXES as PREFIXES
from kfbox.pipelines.schedules import Scheduler, ScheduleStore
from kfbox.server.lazy_routes import install_lazy
from kfbox.server.platform import Platform, required


def install(app: Starlette, platform: Platform) -> None:
    service = required(platform.services.pipelines, "pipelines")
    store = ScheduleStore(platform.db, service.catalog, platform.settings.container_runtime, platform.settings)
    scheduler = Scheduler(store, submit=lambda body: str(service.create_run(body).id))
    platform.services.schedules = store

    def routes() -> list[BaseRoute]:  # built by the first request under a prefix: nothing at start-up
        from fastapi import APIRouter

        from kfbox.pipelines.schedule_routes import build_router

        router, block = build_router(store, scheduler), APIRouter()
        for prefix in PREFIXES:
            block.include_router(router, prefix=prefix)
        return list(block.routes)

    install_lazy(app, routes, prefixes=tuple(f"{prefix}/recurringruns" for prefix in PREFIXES))
    platform.on_startup.append(scheduler.start)
    platform.on_shutdown.append(scheduler.stop)
