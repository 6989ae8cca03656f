"""Compare runs: parameters and scalar metrics side by side, differences only by default, best marked,
and each metric's history as a chart (:mod:`kfbox.ui.metric_chart`).

"Best" is the highest value, or the lowest for metrics whose name says it is a loss or an error.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from kfbox.errors import InvalidInput
from kfbox.pipelines.tables import Run
from kfbox.server.platform import Platform
from kfbox.ui.metric_chart import metric_chart
from kfbox.ui.render import Pages
from kfbox.ui.runs import LIGHT, metric_series, run_row

MAX_RUNS = 20
LOWER_IS_BETTER = ("loss", "error", "mse", "rmse", "mae", "latency", "time")


def lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return any(word in name for word in LOWER_IS_BETTER)


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/compare")
    @router.get("/compare.json")
    @pages.page("compare.html", "Compare runs")
    def compare(request: Request, runs: list[str] = Query(default=[]), all: bool = False) -> dict[str, Any]:
        ids = list(dict.fromkeys(i for part in runs for i in part.split(",") if i))
        if len(ids) > MAX_RUNS:
            raise InvalidInput(f"Compare up to {MAX_RUNS} runs at once; {len(ids)} were picked.")
        with platform.db.read() as s:
            found = {r.id: r for r in s.scalars(select(Run).options(*LIGHT).where(Run.id.in_(ids)))}
            series = metric_series(s, list(found))
        missing = [i for i in ids if i not in found]
        if missing:
            raise InvalidInput(f"No run with id {', '.join(missing)}; pick runs from the runs list.")
        ordered = [found[i] for i in ids]
        columns = [run_row(r) for r in ordered]
        param_rows = _rows([r.parameters for r in ordered], all, best=False)
        metric_rows = _rows([{k: v[-1] for k, v in series[r.id].items()} for r in ordered], all, best=True)
        best = {row["name"]: row["best"] for row in metric_rows}
        names = sorted({k for r in ordered for k in series[r.id]})
        charts = [metric_chart(name, [(r.display_name, series[r.id].get(name, [])) for r in ordered],
                               best.get(name)) for name in names]
        return {"runs": columns, "parameters": param_rows, "metrics": metric_rows, "all": all,
                "ids": ids, "hidden_same": not all, "charts": charts}

    return router


def _rows(values: list[dict[str, Any]], show_all: bool, best: bool) -> list[dict[str, Any]]:
    keys = sorted({k for v in values for k in v})
    rows = []
    for key in keys:
        cells = [v.get(key) for v in values]
        differs = len({repr(c) for c in cells}) > 1
        if not show_all and not differs and len(values) > 1:
            continue
        winner = None
        numeric = [c for c in cells if isinstance(c, int | float) and not isinstance(c, bool)]
        if best and len(numeric) > 1 and differs:
            target = min(numeric) if lower_is_better(key) else max(numeric)
            winner = cells.index(target)
        rows.append({"name": key, "cells": cells, "differs": differs, "best": winner})
    return rows
