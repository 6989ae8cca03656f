"""Runs list: status filter, search, sort on any column, duration, user-picked metric columns, paging.

It reads runs with the KFP API's own listing code (:class:`~kfbox.pipelines.listing.Listing`
over ``RUN_FIELDS``, plus ``duration``), then the page's experiments and metrics in one query
each -- three queries a page whatever its size. Sorting on a metric column sorts all the runs in the
database (:func:`metric_value`), not only the rows of one page.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import defer

from kfbox.errors import InvalidInput
from kfbox.pipelines.listing import Fields, Listing
from kfbox.pipelines.runs import RUN_FIELDS
from kfbox.pipelines.tables import Artifact, Experiment, Run
from kfbox.server.platform import Platform
from kfbox.ui.render import Pages

STATES = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELING", "CANCELED"]
COLUMNS = {"name": "display_name", "state": "state", "created": "created_at", "finished": "finished_at",
           "duration": "duration", "experiment": "experiment_id"}
FIELDS: Fields = {**RUN_FIELDS, "duration": Run.finished_ms - Run.created_ms}  # type: ignore[dict-item]
METRIC_TYPES = ("system.Metrics",)
MAX_METRIC_COLUMNS = 20
METRIC_NAME = re.compile(r"[\w .:/+-]{1,128}")
NO_VALUE = 1.0e308
"""Where runs without the sorted metric go: after every real value, whichever the order."""
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


def metric_value(dialect: str, name: str) -> ColumnElement[Any]:
    """The run's value of metric ``name`` as SQL: the number under that key in its last
    system.Metrics artifact that has one (what :func:`scalar_metrics` shows), or NULL. A correlated
    subquery, so sorting 10,000 runs by it is one query; non-numbers are skipped per backend."""
    if not METRIC_NAME.fullmatch(name):
        raise InvalidInput(f"Cannot sort on metric {name!r}: a metric name is letters, digits, spaces and . : / + -.")
    column, path = Artifact.artifact_metadata, f'$."{name}"'
    value = column[name].as_float()
    if dialect == "postgresql":
        numeric = func.json_typeof(column[name]) == "number"
    elif dialect in ("mysql", "mariadb"):
        numeric = func.json_type(func.json_extract(column, path)).in_(["INTEGER", "DOUBLE", "DECIMAL",
                                                                         "UNSIGNED INTEGER"])
    else:
        numeric = func.json_type(column, path).in_(["integer", "real"])
    number = case((numeric, value))
    return (select(number).where(Artifact.run_id == Run.id, Artifact.schema_title.in_(METRIC_TYPES), numeric)
            .order_by(Artifact.id.desc()).limit(1).scalar_subquery())


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

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
        listing = Listing.parse(None, "created_at desc", page_size, page_token or None)
        fields = FIELDS
        if metric_sort:  # across every page: the database sorts on the metric, runs without it last
            value = metric_value(platform.db.dialect, sort.split(":", 1)[1])
            last = literal(-NO_VALUE if order != "asc" else NO_VALUE)
            fields = {**FIELDS, "metric": func.coalesce(value, last)}  # type: ignore[dict-item]
        listing = Listing(predicates, "metric" if metric_sort else COLUMNS[sort], order != "asc",
                          listing.page_size, listing.offset)
        with platform.db.read() as s:
            rows, token, total = listing.apply(s, select(Run).options(*LIGHT), fields)
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
