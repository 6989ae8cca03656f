"""Run detail: the graph from the IR with live states, the task panel (inputs, outputs, artifacts,
logs), and the run's actions (terminate, retry, clone, archive) as POST forms.

The page and its ``.json`` twin read the run's row and then only the tasks written since this
server last read that run (all of them the first time), with the graph's layout cached per pipeline
version (:mod:`kfbox.ui.run_live`); the task panel reads the few tasks it shows in full. While the
run is active, static/run.js polls ``/runs/{id}/states.json?since=<version>``: the server reads the
tasks changed since (an index range) and sends only the nodes and tasks that changed.
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
from kfbox.server.platform import Platform, required
from kfbox.ui import csrf, dag
from kfbox.ui.artifact_files import ArtifactFiles, preview
from kfbox.ui.render import Pages
from kfbox.ui.run_live import Bounded, Layouts, LiveTasks, affected, generation, node_state_lists, parse_version
from kfbox.ui.runs import run_row

GRAPH_LIMIT = 1500
"""Past this many nodes the page shows the status table only (a graph that size is unreadable)."""
FOLD_TASKS = 100
"""Under a drawn graph, a task table longer than this starts folded (the graph links every task)."""
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
    live = LiveTasks()

    def service() -> Any:
        return required(platform.services.pipelines, "pipelines")

    def load(session: Any, run_id: str, expanded: set[str], graph: bool) -> dict[str, Any]:
        """The run, its task rows and its graph's layout: the run's row, then only the tasks written
        since this server last read them (none for a run that has not moved); the spec is read only
        when a cache lacks what it gives."""
        run = session.scalar(select(Run).where(Run.id == run_id).options(defer(Run.pipeline_spec)))
        if run is None:
            raise NotFound(f"Run {run_id!r} does not exist. List runs with: kfbox runs list")
        table = live.read(session, run_id, generation(run.state_history), run.task_seq)
        key = run.pipeline_version_id or run.id
        counted = counts.get(key)
        if counted is None:
            counted = dag.count_nodes(run.pipeline_spec), specs.pipeline_name(run.pipeline_spec)
            counts.put(key, counted)
        layout: dag.Graph | None = None
        if graph and counted[0] <= GRAPH_LIMIT:
            def spec() -> dict[str, Any]:
                return dict(run.pipeline_spec)
            if "*" in expanded:
                expanded = set(layouts.get(key, spec, set()).groups)
            layout = layouts.get(key, spec, expanded)
        return {"run": run, "table": table, "tasks": list(table.tasks.values()), "layout": layout,
                "expanded": expanded, "node_count": counted[0], "pipeline_name": counted[1]}

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
            drawn = found["layout"].as_json(node_state_lists(found["tasks"])) if found["layout"] else None
            info = run_row(run)
            info.update(parameters=run.parameters, state_history=run.state_history, description=run.description,
                        pipeline_name=found["pipeline_name"], experiment=experiment.display_name if experiment else "",
                        pipeline_version_id=run.pipeline_version_id, final=run.state in FINAL)
        expanded = found["expanded"]
        nodes = {n["id"]: n["state"] for n in (drawn or {}).get("nodes", [])}
        nodes.update((b["id"], b["state"]) for b in (drawn or {}).get("boxes", []))
        tasks = [t for t in found["tasks"] if t["kind"] != "dag"]
        return {"run": info, "graph": drawn, "graph_limit": GRAPH_LIMIT, "fold_tasks": FOLD_TASKS,
                "node_count": found["node_count"],
                "expanded": sorted(expanded), "groups": found["layout"].groups if found["layout"] else [],
                "tasks": tasks, "panel": panel, "selected": task, "open_param": ",".join(sorted(expanded)),
                "node_states": nodes, "version": found["table"].version}

    @router.get("/runs/{run_id}/states.json")
    def run_states(run_id: str, open: str = "", since: str = "") -> JSONResponse:
        """What changed since the page's ``version``: the states of the nodes and tasks that moved, the
        tasks that appeared, the run's state. A poll of a quiet 600-task run reads one row and sends a
        hundred bytes."""
        with platform.db.read() as s:
            found = load(s, run_id, {g for g in open.split(",") if g}, graph=True)
            run = found["run"]
            body: dict[str, Any] = {"run": {"state": run.state, "final": run.state in FINAL}}
        table, layout = found["table"], found["layout"]
        seen = parse_version(since)
        if seen is not None and seen[0] == table.generation and seen[1] <= table.seq:
            changed = table.changed_after(seen[1]) if seen[1] < table.seq else []
            nodes = layout.node_states(node_state_lists(found["tasks"]), affected(changed)) if layout and changed else {}
            body.update(version=table.version, reset=False, nodes=nodes,
                        tasks=[t for t in changed if t["kind"] != "dag"])
        else:  # a version from before a retry, or one this server never gave: everything again
            nodes = layout.node_states(node_state_lists(found["tasks"])) if layout else {}
            body.update(version=table.version, reset=True, nodes=nodes,
                        tasks=[t for t in found["tasks"] if t["kind"] != "dag"])
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

