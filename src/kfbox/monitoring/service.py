"""Mounts monitoring: scrape-time collectors on ``/metrics``, Prometheus service discovery, the local Prometheus.

Routes (all behind the server's token, like ``/metrics``):

- ``GET /monitoring/sd?job=kfbox|kfbox-replica``: Prometheus ``http_sd_configs`` targets.
- ``GET /monitoring/series/{namespace}/{name}?minutes=15``: one InferenceService's chart data
  (:mod:`kfbox.monitoring.charts`: from Prometheus when it runs, else the in-memory history);
  ``&svg=true`` adds the picture (:mod:`kfbox.chart_svg`).
- ``GET /monitoring/alerts``: alerts firing in the local Prometheus.
- ``GET /monitoring/prometheus``: the local Prometheus's status, ``ready`` once it answers queries; ``POST``
  with ``{"action": "start"|"stop"}`` starts or stops it as a child of this server (without waiting:
  ``kfbox monitoring up`` polls the ``GET`` until ``ready``).

``platform.services.monitoring`` is the :class:`MonitoringService`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import ProcessCollector
from starlette.applications import Starlette

from kfbox.errors import InvalidInput, NotFound
from kfbox.monitoring.charts import deployment_series, pipeline_series
from kfbox.monitoring.collectors import ChildProcessCollector, KnativeCollector
from kfbox.monitoring.history import History
from kfbox.monitoring.pipeline_metrics import PipelineCollector
from kfbox.monitoring.prometheus import LocalPrometheus
from kfbox.monitoring.targets import SERVER_JOB, targets
from kfbox.server.lazy_routes import install_lazy
from kfbox.server.platform import Platform

if TYPE_CHECKING:
    from fastapi import APIRouter


class MonitoringService:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.prometheus = LocalPrometheus(platform.settings)
        self.pipeline_collector = PipelineCollector(platform.db)
        self.history = History(interval=platform.settings.monitoring_sample_interval)
        self._sampler: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Startup hook (on the loop): the history sampler; with ``--prometheus``, Prometheus too."""
        self._sampler = asyncio.get_running_loop().create_task(self._sample())
        if self.platform.settings.prometheus:
            self.prometheus.start()

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        self.prometheus.stop()

    async def _sample(self) -> None:
        while True:
            serving = self.platform.services.serving
            if serving is not None:
                self.history.sample(serving, time.time())
                # the runs-by-state query off the event loop: a database read there stalls every request
                summary = await asyncio.to_thread(self.pipeline_collector.summary)
                self.history.sample_pipelines(summary["runs"])
            await asyncio.sleep(self.history.interval)

    async def series(self, namespace: str, name: str, minutes: float) -> dict[str, Any]:
        return await deployment_series(self.prometheus.url, self.history, namespace, name, minutes)

    def alerts(self) -> dict[str, Any]:
        """Firing and pending alerts from the local Prometheus; none without it (the rules run there)."""
        import httpx  # lazily: ~70 ms of CPU at server start otherwise
        url = self.prometheus.url
        if url is None:
            return {"source": "none", "alerts": []}
        try:
            found = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        except (httpx.HTTPError, KeyError, ValueError):
            return {"source": "unreachable", "alerts": []}
        return {"source": "prometheus", "alerts": [
            {"name": a["labels"].get("alertname", ""), "state": a.get("state", ""), "since": a.get("activeAt", ""),
             "summary": a.get("annotations", {}).get("summary", ""),
             "severity": a["labels"].get("severity", "")} for a in found]}

    def pipelines(self) -> dict[str, Any]:
        """Runs by state and task-duration quantiles, as the collector last read them."""
        return self.pipeline_collector.summary()

def install(app: Starlette, platform: Platform) -> None:
    service = MonitoringService(platform)
    platform.services.monitoring = service
    ProcessCollector(registry=platform.metrics)  # the standard process_* series of the server
    platform.metrics.register(ChildProcessCollector(platform))
    platform.metrics.register(KnativeCollector(platform))
    platform.metrics.register(service.pipeline_collector)
    platform.on_startup.append(service.start)
    platform.on_shutdown.append(service.stop)
    install_lazy(app, lambda: list(_router(service).routes), prefixes=("/monitoring",))


def _router(service: MonitoringService) -> APIRouter:
    """Built by the first request under /monitoring (a Prometheus scrape of /monitoring/sd, the dashboard's charts)."""
    from fastapi import APIRouter, Body, Query

    from kfbox.chart_svg import PIPELINE_PANELS, SERVICE_PANELS, render

    router = APIRouter(prefix="/monitoring", tags=["monitoring"])

    @router.get("/sd")
    def service_discovery(job: str = SERVER_JOB) -> list[dict[str, Any]]:
        return targets(service.platform, job)

    @router.get("/series/pipelines")
    async def pipelines_series(minutes: float = Query(default=15, gt=0, le=60), svg: bool = False
                               ) -> dict[str, Any]:
        body = await pipeline_series(service.prometheus.url, service.history, minutes)
        return {**body, "svg": render(body, PIPELINE_PANELS)} if svg else body

    @router.get("/series/{namespace}/{name}")
    async def chart_series(namespace: str, name: str, minutes: float = Query(default=15, gt=0, le=60),
                           svg: bool = False) -> dict[str, Any]:
        """The chart's series; with ``svg=true`` also the picture (the live chart draws it as is)."""
        serving = service.platform.services.serving
        if serving is None or (namespace, name) not in serving.deployments:
            raise NotFound(f"InferenceService {namespace}/{name} does not exist. List them with: kfbox serve list")
        body = await service.series(namespace, name, minutes)
        return {**body, "svg": render(body, SERVICE_PANELS)} if svg else body

    @router.get("/alerts")
    def alerts() -> dict[str, Any]:
        return service.alerts()

    @router.get("/prometheus")
    def prometheus_status() -> dict[str, Any]:  # sync: the probe's request runs in a worker thread
        service.prometheus.probe()
        return service.prometheus.status()

    # async: runs on the loop's thread, which lives as long as the server (ChildProcess.spawn's die_with_parent)
    @router.post("/prometheus")
    async def prometheus_action(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        action = body.get("action")
        if action == "start":
            return service.prometheus.start()
        if action == "stop":
            return service.prometheus.stop()
        raise InvalidInput(f"Unknown action {action!r}; send {{\"action\": \"start\"}} or {{\"action\": \"stop\"}}.")

    return router
