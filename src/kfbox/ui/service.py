"""Mounts the dashboard: server-rendered pages over the same stores the APIs use, plus our static files.

Each page module has ``build(platform, pages) -> APIRouter``; their routes are plain paths
(``/runs``, ``/models``...) that no API uses, and every page also answers at ``<path>.json``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from kfbox.server.platform import Platform
from kfbox.ui.render import Pages

PAGE_MODULES = ["kfbox.ui.home", "kfbox.ui.login", "kfbox.ui.kfp_links", "kfbox.ui.runs", "kfbox.ui.run_new", "kfbox.ui.run_page",
                "kfbox.ui.experiments", "kfbox.ui.compare", "kfbox.ui.pipelines", "kfbox.ui.models", "kfbox.ui.deployments", "kfbox.ui.deployment_logs",
                "kfbox.ui.artifacts", "kfbox.ui.notebooks", "kfbox.ui.monitoring",
                "kfbox.ui.monitoring_loadtest", "kfbox.ui.llm"]
STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, platform: Platform) -> None:
    pages = Pages(platform)
    for name in PAGE_MODULES:
        app.include_router(importlib.import_module(name).build(platform, pages))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
