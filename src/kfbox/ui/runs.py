"""Runs list: status filter, search, sort on any column, duration, user-picked metric columns, paging.

It reads runs with the KFP API's own listing code (:class:`~kfbox.pipelines.listing.Listing`
over ``RUN_FIELDS``, plus ``duration``), then the page's experiments and metrics in one query
each -- three queries a page whatever its size. Sorting on a metric column sorts all the runs in the
database (:mod:`kfbox.ui.metric_ranking`), not only the rows of one page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import defer

from kfbox.errors import InvalidInput
from kfbox.pipelines.listing import Fields, Listing
from kfbox.pipelines.runs import RUN_FIELDS
from kfbox.pipelines.tables import Artifact, Experiment, Run
from kfbox.server.platform import Platform
from kfbox.ui.metric_ranking import METRIC_TYPES, MetricValues, metric_page, without_metric
from kfbox.ui.render import Pages

STATES = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELING", "CANCELED"]
COLUMNS = {"name": "display_name", "state": "state", "created": "created_at", "finished": "finished_at",
           "duration": "duration", "experiment": "experiment_id"}
FIELDS: Fields = {**RUN_FIELDS, "duration": Run.finished_ms - Run.created_ms}  # type: ignore[dict-item]
MAX_METRIC_COLUMNS = 20
LIGHT = (defer(Run.pipeline_spec), defer(Run.state_history))
"""List pages never show a run's spec: not loading it makes a 50-row page several times cheaper."""


def run_row(run: Run) -> dict[str, Any]:
    """What list pages show of a run (no spec: that is the detail page's)."""
    end = run.finished_ms
    return {"run_id": run.id, "display_name": run.display_name, "state": run.state,
            "experiment_id": run.experiment_id, "created_ms": run.created_ms, "finished_ms": end,
            "duration_ms": (end - run.created_ms) if end else None, "storage_state": run.storage_state,
            "pipeline_id": run.pipeline_id, "error": run.error}


def metric_series(session: Any, run_ids: list[str]) -> dict[str, dict[str, list[float]]]:
    """run id -> {metric name: its values in logging order} from the runs' system.Metrics artifacts
    (one query). A run logs a metric more than once with one artifact per epoch, loop iteration or
    retry; most runs have one value per metric."""
    found: dict[str, dict[str, list[float]]] = {rid: {} for rid in run_ids}
    if not run_ids:
        return found
    rows = session.execute(select(Artifact.run_id, Artifact.artifact_metadata)
                           .where(Artifact.run_id.in_(run_ids), Artifact.schema_title.in_(METRIC_TYPES))
                           .order_by(Artifact.id))
    for run_id, metadata in rows:
        for key, value in (metadata or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "display_name":
                found[run_id].setdefault(key, []).append(value)
    return found


def scalar_metrics(session: Any, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """run id -> {metric name: its last value} (one query)."""
    return {rid: {k: v[-1] for k, v in series.items()} for rid, series in metric_series(session, run_ids).items()}


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    ranking = MetricValues()

    @router.get("/runs")
    @router.get("/runs.json")
    @pages.page("runs.html", "Runs")
    def runs(request: Request, state: str = "", q: str = "", sort: str = "created", order: str = "desc",
             metrics: list[str] = Query(default=[]), experiment: str = "", archived: bool = False,
             page_token: str = "", page_size: int = Query(default=50, ge=1, le=500)) -> dict[str, Any]:
        picked = [m for part in metrics for m in part.split(",") if m.strip()][:MAX_METRIC_COLUMNS]
        picked = list(dict.fromkeys(m.strip() for m in picked))
        if state and state not in STATES:
            raise InvalidInput(f"Unknown run state {state!r}; pick one of {', '.join(STATES)}.")
        predicates: list[dict[str, Any]] = [{"key": "storage_state", "operation": "EQUALS",
                                             "string_value": "ARCHIVED" if archived else "AVAILABLE"}]
        if state:
            predicates.append({"key": "state", "operation": "EQUALS", "string_value": state})
        if q:
            predicates.append({"key": "display_name", "operation": "IS_SUBSTRING", "string_value": q})
        if experiment:
            predicates.append({"key": "experiment_id", "operation": "EQUALS", "string_value": experiment})
        metric_sort = sort.startswith("metric:")
        if not metric_sort and sort not in COLUMNS:
            raise InvalidInput(f"Cannot sort runs on {sort!r}; use one of {', '.join(COLUMNS)} or metric:<name>.")
        listing = Listing.parse(f"dashboard runs sort={sort}", None, "created_at desc", page_size, page_token)
        listing = listing.narrowed(predicates, "created_at" if metric_sort else COLUMNS[sort], order != "asc")
        with platform.db.read() as s:
            if metric_sort:  # across every page: the filtered runs ordered by the metric, runs without it last
                name = sort.split(":", 1)[1]
                ranked = ranking.get(s, platform.db.dialect, name)
                chosen, total = metric_page(s, listing, FIELDS, ranked, order != "asc",
                                            without_metric(platform.db.dialect, name))
                found = {r.id: r for r in s.scalars(select(Run).options(*LIGHT).where(Run.id.in_(chosen)))}
                rows = [found[i] for i in chosen if i in found]
                end = listing.offset + len(rows)
                token = listing.token_at(end) if end < total else ""
            else:
                rows, token, total = listing.apply(s, select(Run).options(*LIGHT), FIELDS)
            ids = [r.id for r in rows]
            names = dict(s.execute(select(Experiment.id, Experiment.display_name)
                                   .where(Experiment.id.in_({r.experiment_id for r in rows}))).all())
            values = scalar_metrics(s, ids)
        items = []
        for run in rows:
            item = run_row(run)
            item["experiment"] = names.get(run.experiment_id, "")
            item["metrics"] = values.get(run.id, {})
            items.append(item)
        seen = sorted({k for i in items for k in i["metrics"]})
        base = {"state": state, "q": q, "sort": sort, "order": order, "experiment": experiment,
                "archived": "1" if archived else "", "page_size": str(page_size)}

        def url(**changes: Any) -> str:
            params = {**base, **changes}
            pairs = [(k, v) for k, v in params.items() if v not in ("", None)]
            pairs += [("metrics", m) for m in picked]
            return "/runs?" + urlencode(pairs)

        sort_links = {col: url(sort=col, order="asc" if sort == col and order == "desc" else "desc", page_token="")
                      for col in [*COLUMNS, *(f"metric:{m}" for m in picked)]}
        return {"runs": items, "total": total, "states": STATES, "filters": base, "metric_columns": picked,
                "metric_names": seen, "sort_links": sort_links,
                "next_url": url(page_token=token) if token else "",
                "first_url": url(page_token="") if listing.offset else "",
                "next_page_token": token, "offset": listing.offset}

    return router
