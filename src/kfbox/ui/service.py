"""Mounts the dashboard: server-rendered pages over the same stores the APIs use, plus our static files.

Each page module has ``build(platform, pages) -> APIRouter``; their routes are plain paths
(``/runs``, ``/models``...) that no API uses, and every page also answers at ``<path>.json``.
The pages and their template environment are built on the first request that reaches them
(:mod:`kfbox.server.lazy_routes`): a tenth of ``kfbox up`` otherwise, for a page nobody asked for yet.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles

from kfbox.server.lazy_routes import install_lazy
from kfbox.server.platform import Platform

PAGE_MODULES = ["kfbox.ui.home", "kfbox.ui.login", "kfbox.ui.kfp_links", "kfbox.ui.runs", "kfbox.ui.run_new", "kfbox.ui.run_page",
                "kfbox.ui.experiments", "kfbox.ui.compare", "kfbox.ui.pipelines", "kfbox.ui.models", "kfbox.ui.deployments", "kfbox.ui.deployment_logs",
                "kfbox.ui.artifacts", "kfbox.ui.notebooks", "kfbox.ui.monitoring",
                "kfbox.ui.monitoring_loadtest", "kfbox.ui.llm"]
STATIC = Path(__file__).parent / "static"


def install(app: Starlette, platform: Platform) -> None:
    def build() -> list[BaseRoute]:
        from fastapi import APIRouter

        from kfbox.ui.render import Pages

        pages = Pages(platform)
        block = APIRouter()
        for name in PAGE_MODULES:
            block.include_router(importlib.import_module(name).build(platform, pages))
        return list(block.routes)

    install_lazy(app, build)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
