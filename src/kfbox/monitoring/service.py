"""Mounts monitoring: scrape-time collectors on ``/metrics``, Prometheus service discovery, the local Prometheus.

Routes (all behind the server's token, like ``/metrics``):

- ``GET /monitoring/sd?job=kfbox|kfbox-replica``: Prometheus ``http_sd_configs`` targets.
- ``GET /monitoring/prometheus``: the local Prometheus's status; ``POST`` with
  ``{"action": "start"|"stop"}`` starts or stops it as a child of this server.

``platform.services["monitoring"]`` is the :class:`MonitoringService`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, FastAPI
from prometheus_client import ProcessCollector

from kfbox.errors import InvalidInput
from kfbox.monitoring.collectors import ChildProcessCollector, KnativeCollector
from kfbox.monitoring.pipeline_metrics import PipelineCollector
from kfbox.monitoring.prometheus import LocalPrometheus
from kfbox.monitoring.targets import SERVER_JOB, targets
from kfbox.server.platform import Platform


class MonitoringService:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.prometheus = LocalPrometheus(platform.settings)

    def start(self) -> None:
        """Startup hook: with ``--prometheus``, start it (the server is bound; its port is known)."""
        if self.platform.settings.prometheus:
            self.prometheus.settings = self.platform.settings
            self.prometheus.start()

    def stop(self) -> None:
        self.prometheus.stop()


def install(app: FastAPI, platform: Platform) -> None:
    service = MonitoringService(platform)
    platform.services["monitoring"] = service
    ProcessCollector(registry=platform.metrics)  # the standard process_* series of the server
    platform.metrics.register(ChildProcessCollector(platform))
    platform.metrics.register(KnativeCollector(platform))
    platform.metrics.register(PipelineCollector(platform.db))
    platform.on_startup.append(service.start)
    platform.on_shutdown.append(service.stop)
    app.include_router(_router(service))


def _router(service: MonitoringService) -> APIRouter:
    router = APIRouter(prefix="/monitoring", tags=["monitoring"])

    @router.get("/sd")
    def service_discovery(job: str = SERVER_JOB) -> list[dict[str, Any]]:
        return targets(service.platform, job)

    @router.get("/prometheus")
    def prometheus_status() -> dict[str, Any]:
        return service.prometheus.status()

    # async: runs on the loop's thread, which lives as long as the server (see prometheus._spawn)
    @router.post("/prometheus")
    async def prometheus_action(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        action = body.get("action")
        if action == "start":
            return service.prometheus.start()
        if action == "stop":
            return service.prometheus.stop()
        raise InvalidInput(f"Unknown action {action!r}; send {{\"action\": \"start\"}} or {{\"action\": \"stop\"}}.")

    return router
