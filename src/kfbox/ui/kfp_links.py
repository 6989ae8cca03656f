"""The KFP UI's links (``/pipeline/#/runs/details/<id>``, as ``kfp.Client`` prints them).

The part after ``#`` never reaches a server, so ``/pipeline/`` is a tiny page whose script
(static/kfp-links.js) reads the fragment and goes to the matching dashboard page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kfbox.server.platform import Platform
from kfbox.ui.render import Pages

ROUTES = {"runs": "/runs/", "experiments": "/experiments/", "pipelines": "/pipelines/"}


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/pipeline")
    @router.get("/pipeline/")
    @router.get("/pipeline/index.json")
    @pages.page("kfp_links.html", "Opening…")
    def kfp_links(request: Request) -> dict[str, Any]:
        return {"routes": ROUTES}

    return router
