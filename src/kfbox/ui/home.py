"""Home: health, counts (one COUNT per table), the latest runs and what is being served."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import func, select

from kfbox.pipelines.runs import ACTIVE
from kfbox.pipelines.tables import Experiment, Pipeline, Run
from kfbox.registry.tables import Resource
from kfbox.server.platform import Platform
from kfbox.ui.deployments import summaries
from kfbox.ui.formats import duration
from kfbox.ui.render import Pages
from kfbox.ui.runs import LIGHT, run_row


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    @router.get("/index.json")
    @pages.page("home.html", "kfbox")
    def home(request: Request) -> dict[str, Any]:
        db = platform.db
        ok = True
        try:
            db.ping()
        except Exception:  # noqa: BLE001 - a health page reports the failure instead of failing
            ok = False
        with db.read() as s:
            counts = {
                "runs": s.scalar(select(func.count()).select_from(Run)) or 0,
                "active_runs": s.scalar(select(func.count()).select_from(Run).where(Run.state.in_(ACTIVE))) or 0,
                "experiments": s.scalar(select(func.count()).select_from(Experiment)) or 0,
                "pipelines": s.scalar(select(func.count()).select_from(Pipeline)) or 0,
                "models": s.scalar(select(func.count()).select_from(Resource)
                                   .where(Resource.family == "registered_model")) or 0,
                "model_versions": s.scalar(select(func.count()).select_from(Resource)
                                           .where(Resource.family == "model_version")) or 0,
            }
            recent = [run_row(r) for r in s.scalars(select(Run).options(*LIGHT).order_by(Run.created_ms.desc()).limit(10))]
        deployments = summaries(platform)
        counts["deployments"] = len(deployments)
        return {"url": platform.url, "counts": counts, "recent_runs": recent,
                "deployments": [d for d in deployments if d["ready"]] or deployments[:10],
                "health": {"ok": ok, "database": db.dialect,
                           "uptime": duration((time.time() - platform.started_at) * 1000)}}

    return router
