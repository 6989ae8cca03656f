"""Experiments with their last five runs (two queries a page, whatever its size), archive and restore."""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import TextClause, select, text

from kfbox.pipelines.catalog import EXPERIMENT_FIELDS
from kfbox.pipelines.listing import Listing
from kfbox.pipelines.tables import Experiment, Run
from kfbox.server.platform import Platform, required
from kfbox.ui import csrf
from kfbox.ui.render import Pages

LAST_RUNS = 5


def last_runs(session: Any, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The last five runs of each experiment, in one query: one ``ORDER BY created_ms DESC LIMIT 5``
    per experiment joined with UNION ALL, each an index range on (experiment_id, created_ms). A
    window function (ROW_NUMBER() OVER (PARTITION BY experiment_id ...)) would number every run of
    every experiment on the page first: 10,000 rows read to keep 250."""
    recent: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        for row in session.execute(_latest_query(len(ids)), {f"e{k}": i for k, i in enumerate(ids)}).mappings():
            recent[row["experiment_id"]].append(dict(row))
    for runs in recent.values():  # a derived table's order is not the outer query's (MariaDB drops it)
        runs.sort(key=lambda r: (r["created_ms"], r["run_id"]), reverse=True)
    return recent


@functools.lru_cache(maxsize=8)
def _latest_query(count: int) -> TextClause:
    """The UNION ALL for ``count`` experiments (``:e0``...), built once per page size: as SQLAlchemy
    expressions, building and hashing 50 subqueries cost more than running them."""
    table, per = Run.__tablename__, LAST_RUNS
    parts = [f"SELECT * FROM (SELECT id AS run_id, display_name, state, experiment_id, created_ms FROM {table} "
             f"WHERE experiment_id = :e{k} ORDER BY created_ms DESC, id DESC LIMIT {per}) AS r{k}" for k in range(count)]
    return text(" UNION ALL ".join(parts))


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/experiments")
    @router.get("/experiments.json")
    @pages.page("experiments.html", "Experiments")
    def experiments(request: Request, archived: bool = False, page_token: str = "",
                    page_size: int = Query(default=50, ge=1, le=500)) -> dict[str, Any]:
        listing = Listing.parse("dashboard experiments", None, "created_at desc", page_size, page_token)
        listing = listing.narrowed([{"key": "storage_state", "operation": "EQUALS",
                                     "string_value": "ARCHIVED" if archived else "AVAILABLE"}])
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
        row = required(platform.services.pipelines, "pipelines").catalog.get_experiment(experiment_id)
        return {"experiment": {"experiment_id": row.id, "display_name": row.display_name,
                               "description": row.description, "storage_state": row.storage_state,
                               "created_ms": row.created_ms}}

    @router.post("/experiments/{experiment_id}/archive")
    @router.post("/experiments/{experiment_id}/restore")
    @pages.action
    async def archive(request: Request, experiment_id: str) -> Response:
        await csrf.checked_form(request)
        state = "ARCHIVED" if request.url.path.endswith("/archive") else "AVAILABLE"
        required(platform.services.pipelines, "pipelines").catalog.set_experiment_state(experiment_id, state)
        return pages.redirect(f"/experiments/{experiment_id}")

    return router
