"""The Monitoring page: where Prometheus runs, firing alerts, a live chart per InferenceService, pipelines.

Charts are drawn by ``/static/charts.js`` from ``/monitoring/series/...`` (Prometheus when it
runs, else kfbox's in-memory hour); the page's ``.json`` twin carries the same lists.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kfbox.server.platform import Platform, required
from kfbox.ui.render import Pages

MAX_CHARTS = 20


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/monitoring")
    @router.get("/monitoring.json")
    @pages.page("monitoring.html", "Monitoring")
    def monitoring(request: Request) -> dict[str, Any]:
        service = required(platform.services.monitoring, "monitoring")
        serving = platform.services.serving
        keys = sorted(serving.deployments) if serving is not None else []
        return {"prometheus": service.prometheus.status(), "alerts": service.alerts(),
                "services": [{"namespace": ns, "name": name} for ns, name in keys[:MAX_CHARTS]],
                "more_services": max(0, len(keys) - MAX_CHARTS), "pipelines": service.pipelines(),
                "sample_interval": service.history.interval}

    return router
