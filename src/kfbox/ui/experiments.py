"""Experiments with their last five runs (two queries a page), archive and restore."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from kfbox.pipelines.catalog import EXPERIMENT_FIELDS
from kfbox.pipelines.listing import Listing
from kfbox.pipelines.tables import Experiment, Run
from kfbox.server.platform import Platform
from kfbox.ui import csrf
from kfbox.ui.render import Pages

LAST_RUNS = 5


def last_runs(session: Any, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The last five runs of each experiment: one query over the newest runs of these experiments
    (in created order, so it stops early), then one per experiment that query left short."""
    recent: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    columns = (Run.id, Run.display_name, Run.state, Run.experiment_id, Run.created_ms)
    window = len(ids) * LAST_RUNS * 20
    rows = session.execute(select(*columns).where(Run.experiment_id.in_(ids))
                           .order_by(Run.created_ms.desc()).limit(window)).all()
    for row in rows:
        if len(recent[row.experiment_id]) < LAST_RUNS:
            recent[row.experiment_id].append(dict(row._mapping))
    if len(rows) == window:  # busy experiments filled the window: the quiet ones ask for their own
        for experiment_id in [i for i in ids if len(recent[i]) < LAST_RUNS]:
            recent[experiment_id] = [dict(r._mapping) for r in session.execute(
                select(*columns).where(Run.experiment_id == experiment_id)
                .order_by(Run.created_ms.desc()).limit(LAST_RUNS))]
    for runs in recent.values():
        for run in runs:
            run["run_id"] = run.pop("id")
    return recent


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/experiments")
    @router.get("/experiments.json")
    @pages.page("experiments.html", "Experiments")
    def experiments(request: Request, archived: bool = False, page_token: str = "",
                    page_size: int = Query(default=50, ge=1, le=500)) -> dict[str, Any]:
        listing = Listing.parse(None, "created_at desc", page_size, page_token or None)
        listing = Listing([{"key": "storage_state", "operation": "EQUALS",
                            "string_value": "ARCHIVED" if archived else "AVAILABLE"}],
                          listing.sort_key, listing.descending, listing.page_size, listing.offset)
        with platform.db.read() as s:
            rows, token, total = listing.apply(s, select(Experiment), EXPERIMENT_FIELDS)
            ids = [e.id for e in rows]
            recent = last_runs(s, ids)
        items = [{"experiment_id": e.id, "display_name": e.display_name, "description": e.description,
                  "created_ms": e.created_ms, "storage_state": e.storage_state, "last_run_ms": e.last_run_ms,
                  "recent_runs": recent[e.id]} for e in rows]
        next_url = f"/experiments?page_token={token}" + ("&archived=1" if archived else "") if token else ""
        return {"experiments": items, "total": total, "archived": archived, "next_url": next_url}

    @router.get("/experiments/{experiment_id}")
    @router.get("/experiments/{experiment_id}.json")
    @pages.page("experiment.html", lambda d: d["experiment"]["display_name"])
    def experiment(request: Request, experiment_id: str) -> dict[str, Any]:
        row = platform.services["pipelines"].catalog.get_experiment(experiment_id)
        return {"experiment": {"experiment_id": row.id, "display_name": row.display_name,
                               "description": row.description, "storage_state": row.storage_state,
                               "created_ms": row.created_ms}}

    @router.post("/experiments/{experiment_id}/archive")
    @router.post("/experiments/{experiment_id}/restore")
    @pages.action
    async def archive(request: Request, experiment_id: str) -> Response:
        await csrf.checked_form(request)
        state = "ARCHIVED" if request.url.path.endswith("/archive") else "AVAILABLE"
        platform.services["pipelines"].catalog.set_experiment_state(experiment_id, state)
        return pages.redirect(f"/experiments/{experiment_id}")

    return router
