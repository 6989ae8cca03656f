"""Run detail: the graph from the IR with live states, the task panel (inputs, outputs, artifacts,
logs), and the run's actions (terminate, retry, clone, archive) as POST forms.

The page and its ``.json`` twin read the run exactly as ``GET /apis/v2beta1/runs/{id}`` does
(:meth:`RunStore.details`: three queries, whatever the number of tasks); static/run.js polls the
twin while the run is active and recolours the nodes.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from kfbox.errors import InvalidInput, NotFound
from kfbox.pipelines import spec as specs
from kfbox.pipelines.runs import FINAL
from kfbox.pipelines.tables import Task
from kfbox.server.platform import Platform
from kfbox.ui import csrf, dag
from kfbox.ui.artifact_files import ArtifactFiles, preview
from kfbox.ui.render import Pages
from kfbox.ui.runs import run_row

GRAPH_LIMIT = 1500
"""Past this many nodes the page shows the status table only (a graph that size is unreadable)."""
LOG_PAGE_BYTES = 256 * 1024


def task_row(t: Task) -> dict[str, Any]:
    end = t.finished_ms
    details = getattr(t, "details", None) or {}  # engines that record inputs, attempts and skip reasons
    inputs = details.get("inputs") or {}
    return {"input_values": inputs.get("parameters") or {}, "input_artifacts": inputs.get("artifacts") or {},
            "attempts": int(details.get("attempts") or 1), "history": details.get("state_history") or [],
            "warnings": details.get("warnings") or [], "skip_reason": details.get("reason"),"task_id": t.id, "name": t.name, "path": t.path, "node": dag.ir_path(t.path), "kind": t.kind,
            "state": t.state, "started_ms": t.started_ms, "finished_ms": end, "parent_id": t.parent_id,
            "duration_ms": (end - t.started_ms) if end and t.started_ms else None, "cache_hit": t.cache_hit,
            "error": t.error, "parameters": t.parameters, "has_log": bool(t.log_path)}


def read_log(path: str | None, offset: int = 0, limit: int = LOG_PAGE_BYTES) -> tuple[str, int, int]:
    """(text from ``offset``, next offset, file size); a log that does not exist yet is empty."""
    if not path:
        return "", 0, 0
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = offset if offset else max(0, size - limit)
            f.seek(min(start, size))
            data = f.read(limit)
    except FileNotFoundError:
        return "", 0, 0
    return data.decode(errors="replace"), min(start, size) + len(data), size


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    files = ArtifactFiles(platform.settings.artifacts_dir)

    def service() -> Any:
        return platform.services["pipelines"]

    @router.get("/runs/{run_id}")
    @router.get("/runs/{run_id}.json")
    @pages.page("run.html", lambda d: d["run"]["display_name"])
    def run_page(request: Request, run_id: str, task: str = "", open: str = "",
                 graph: bool = Query(default=True)) -> dict[str, Any]:
        svc = service()
        run, tasks, artifacts = svc.runs.details(run_id)
        experiment = svc.catalog.get_experiment(run.experiment_id)
        spec = run.pipeline_spec
        record = [task_row(t) for t in tasks]
        states: dict[str, list[str]] = {}
        for t in record:
            if t["node"]:
                states.setdefault(t["node"], []).append(t["state"])
        total = dag.count_nodes(spec)
        expanded = {g for g in open.split(",") if g}
        drawn: dict[str, Any] | None = None
        groups: list[str] = []
        if graph and total <= GRAPH_LIMIT:
            if "*" in expanded:
                expanded = set(dag.build_graph(spec).groups)
            laid = dag.build_graph(spec, expanded, states)
            drawn, groups = laid.as_json(), laid.groups
        info = run_row(run)
        info.update(parameters=run.parameters, state_history=run.state_history, description=run.description,
                    pipeline_name=specs.pipeline_name(spec) if spec else "", experiment=experiment.display_name,
                    pipeline_version_id=run.pipeline_version_id, final=run.state in FINAL)
        logs = {t.id: t.log_path for t in tasks}
        panel = _panel(run_id, spec, record, artifacts, logs, task) if task else None
        return {"run": info, "graph": drawn, "graph_limit": GRAPH_LIMIT, "node_count": total,
                "expanded": sorted(expanded), "groups": groups, "tasks": [t for t in record if t["kind"] != "dag"],
                "panel": panel, "selected": task, "open_param": ",".join(sorted(expanded)),
                "node_states": {n["id"]: n["state"] for n in (drawn or {}).get("nodes", [])}}

    def _panel(run_id: str, spec: dict[str, Any], record: list[dict[str, Any]], artifacts: list[Any],
               logs: dict[str, str | None], selected: str) -> dict[str, Any]:
        node = dag.ir_path(selected)
        attempts = [t for t in record if t["path"] == selected or t["task_id"] == selected
                    or (t["node"] == node and t["kind"] != "dag")]
        found = dag.ir_task(spec, node)
        if not attempts and found is None:
            raise NotFound(f"Run {run_id!r} has no task {selected!r}. Pick one from the graph or the table.")
        by_task: dict[str, list[Any]] = {}
        for art in artifacts:
            by_task.setdefault(art.task_id, []).append(art)
        for t in attempts:
            t["artifacts"] = [preview(files, a) for a in by_task.get(t["task_id"], [])]
            text, offset, size = read_log(logs.get(t["task_id"]))
            t["log"], t["log_offset"], t["log_truncated"] = text, offset, size > len(text.encode())
        task, component = found if found else ({}, {})
        return {"node": node, "name": node.rsplit("/", 1)[-1], "attempts": attempts,
                "inputs": dag.describe_inputs(task) if task else [],
                "component": task.get("componentRef", {}).get("name", ""),
                "is_group": "dag" in component, "executor": component.get("executorLabel", "")}

    @router.get("/runs/{run_id}/log", response_class=PlainTextResponse)
    def task_log(run_id: str, task: str, offset: int = Query(default=0, ge=0)) -> Response:
        """A task's log from ``offset`` (bytes); ``X-Log-Offset`` is where the next call starts."""
        row = service().runs.task(run_id, task)
        if not row.log_path:
            raise InvalidInput(f"Task {row.path!r} is a DAG; it has no log of its own. Pick one of its tasks.")
        text, next_offset, size = read_log(row.log_path, offset)
        return PlainTextResponse(text, headers={"X-Log-Offset": str(next_offset), "X-Log-Size": str(size),
                                                "X-Task-State": row.state, "Cache-Control": "no-store",
                                                "X-Content-Type-Options": "nosniff"})

    @router.post("/runs/{run_id}/terminate")
    @pages.action
    async def terminate(request: Request, run_id: str) -> Response:
        await csrf.checked_form(request)
        svc = service()
        svc.runs.get(run_id)
        svc.supervisor.cancel(run_id)
        return pages.redirect(f"/runs/{run_id}")

    @router.post("/runs/{run_id}/retry")
    @pages.action
    async def retry(request: Request, run_id: str) -> Response:
        """KFP's retry, in place: failed and skipped tasks run again, succeeded ones are reused."""
        await csrf.checked_form(request)
        service().supervisor.retry(run_id)
        return pages.redirect(f"/runs/{run_id}")

    @router.post("/runs/{run_id}/archive")
    @router.post("/runs/{run_id}/restore")
    @pages.action
    async def archive(request: Request, run_id: str) -> Response:
        await csrf.checked_form(request)
        state = "ARCHIVED" if request.url.path.endswith("/archive") else "AVAILABLE"
        service().runs.set_storage(run_id, state)
        return pages.redirect(f"/runs/{run_id}")

    return router

