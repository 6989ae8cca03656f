"""Run detail: the graph from the IR with live states, the task panel (inputs, outputs, artifacts,
logs), and the run's actions (terminate, retry, clone, archive) as POST forms.

The page and its ``.json`` twin read the run and its tasks' states in two queries whatever the
number of tasks, with the graph's layout cached per pipeline version (:mod:`kfbox.ui.run_live`);
the task panel reads the few tasks it shows in full. While the run is active, static/run.js polls
``/runs/{id}/states.json?since=<version>``, which sends only the nodes and tasks that changed.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import defer

from kfbox.apis import FINAL_STATES as FINAL
from kfbox.errors import InvalidInput, NotFound
from kfbox.pipelines import spec as specs
from kfbox.pipelines.tables import Artifact, Experiment, Run, Task
from kfbox.server.platform import Platform
from kfbox.ui import csrf, dag
from kfbox.ui.artifact_files import ArtifactFiles, preview
from kfbox.ui.render import Pages
from kfbox.ui.run_live import Bounded, Deltas, Layouts, node_state_lists, snapshot, task_states
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

    layouts = Layouts()
    counts: Bounded[str, tuple[int, str]] = Bounded(256)
    deltas = Deltas()

    def service() -> Any:
        return platform.services["pipelines"]

    def load(session: Any, run_id: str, expanded: set[str], graph: bool, with_spec: bool = True) -> dict[str, Any]:
        """The run, its task rows and its graph with states: two queries, a cached layout."""
        query = select(Run).where(Run.id == run_id)
        if not with_spec:
            query = query.options(defer(Run.pipeline_spec), defer(Run.state_history))
        run = session.scalar(query)
        if run is None:
            raise NotFound(f"Run {run_id!r} does not exist. List runs with: kfbox runs list")
        tasks = task_states(session, run_id)
        key = run.pipeline_version_id or run.id
        counted = counts.get(key)
        if counted is None:
            counted = dag.count_nodes(run.pipeline_spec), specs.pipeline_name(run.pipeline_spec)
            counts.put(key, counted)
        drawn: dict[str, Any] | None = None
        groups: list[str] = []
        if graph and counted[0] <= GRAPH_LIMIT:
            if "*" in expanded:
                expanded = set(layouts.get(key, run.pipeline_spec, set()).groups)
            laid = layouts.get(key, run.pipeline_spec, expanded)
            drawn, groups = laid.as_json(node_state_lists(tasks)), laid.groups
        return {"run": run, "tasks": tasks, "graph": drawn, "groups": groups, "expanded": expanded,
                "node_count": counted[0], "pipeline_name": counted[1]}

    @router.get("/runs/{run_id}")
    @router.get("/runs/{run_id}.json")
    @pages.page("run.html", lambda d: d["run"]["display_name"])
    def run_page(request: Request, run_id: str, task: str = "", open: str = "",
                 graph: bool = Query(default=True)) -> dict[str, Any]:
        with platform.db.read() as s:
            found = load(s, run_id, {g for g in open.split(",") if g}, graph)
            run = found["run"]
            experiment = s.get(Experiment, run.experiment_id)
            panel = _panel(s, run_id, run.pipeline_spec, found["tasks"], task) if task else None
        drawn, expanded = found["graph"], found["expanded"]
        info = run_row(run)
        info.update(parameters=run.parameters, state_history=run.state_history, description=run.description,
                    pipeline_name=found["pipeline_name"], experiment=experiment.display_name if experiment else "",
                    pipeline_version_id=run.pipeline_version_id, final=run.state in FINAL)
        nodes = {n["id"]: n["state"] for n in (drawn or {}).get("nodes", [])}
        nodes.update((b["id"], b["state"]) for b in (drawn or {}).get("boxes", []))
        open_param = ",".join(sorted(expanded))
        tasks = [t for t in found["tasks"] if t["kind"] != "dag"]
        version = deltas.since(run_id, open_param, "", snapshot(run.state, nodes, tasks), tasks)["version"]
        return {"run": info, "graph": drawn, "graph_limit": GRAPH_LIMIT, "node_count": found["node_count"],
                "expanded": sorted(expanded), "groups": found["groups"], "tasks": tasks,
                "panel": panel, "selected": task, "open_param": open_param, "node_states": nodes,
                "version": version}

    @router.get("/runs/{run_id}/states.json")
    def run_states(run_id: str, open: str = "", since: str = "") -> JSONResponse:
        """What changed since the page's ``version``: the states of nodes and tasks that moved, the
        tasks that appeared, the run's state. A poll of a quiet 600-task run is a few hundred bytes."""
        expanded = {g for g in open.split(",") if g}
        with platform.db.read() as s:
            found = load(s, run_id, expanded, graph=True, with_spec=False)
        run, drawn = found["run"], found["graph"] or {}
        nodes = {n["id"]: n["state"] for n in drawn.get("nodes", [])}
        nodes.update((b["id"], b["state"]) for b in drawn.get("boxes", []))
        tasks = [t for t in found["tasks"] if t["kind"] != "dag"]
        open_param = ",".join(sorted(found["expanded"]))
        body = deltas.since(run_id, open_param, since, snapshot(run.state, nodes, tasks), tasks)
        body["run"] = {"state": run.state, "final": run.state in FINAL}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def _panel(s: Any, run_id: str, spec: dict[str, Any], tasks: list[dict[str, Any]],
               selected: str) -> dict[str, Any]:
        node = dag.ir_path(selected)
        ids = [t["task_id"] for t in tasks if t["path"] == selected or t["task_id"] == selected
               or (t["node"] == node and t["kind"] != "dag")]
        found = dag.ir_task(spec, node)
        if not ids and found is None:
            raise NotFound(f"Run {run_id!r} has no task {selected!r}. Pick one from the graph or the table.")
        rows = list(s.scalars(select(Task).where(Task.id.in_(ids)).order_by(Task.created_ms, Task.id))) if ids else []
        arts = list(s.scalars(select(Artifact).where(Artifact.run_id == run_id, Artifact.task_id.in_(ids))
                              .order_by(Artifact.id))) if ids else []
        by_task: dict[str, list[Any]] = {}
        for art in arts:
            by_task.setdefault(art.task_id, []).append(art)
        attempts = [task_row(t) for t in rows]
        for row, t in zip(rows, attempts, strict=True):
            t["artifacts"] = [preview(files, a) for a in by_task.get(t["task_id"], [])]
            text, offset, size = read_log(row.log_path)
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

