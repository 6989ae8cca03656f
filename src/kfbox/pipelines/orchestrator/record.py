"""The worker's side of the run record: one ``task_started`` and one ``task_finished`` per task.

Every DAG (root, sub-pipeline, condition, loop, iteration, exit handler) is a task too, with
its parent, so ``run_details.task_details`` has the tree the KFP API returns. Finished tasks'
outputs are in the events file before the run goes on, which is what a restart resumes from.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from kfbox.pipelines.events import EventWriter
from kfbox.pipelines.orchestrator.values import Artifact


class Failure(NamedTuple):
    message: str
    code: int | None  # google.rpc.Code (values.UNKNOWN, ...)
    path: str = ""  # the failed task's path in the run ("" for the root)


class Recorder:
    def __init__(self, events: EventWriter) -> None:
        self.events = events
        self.lock = threading.Lock()
        self.failures: list[Failure] = []
        self.paths: dict[str, str] = {}  # task id -> path, for the failures

    def started(self, task_id: str, parent_id: str | None, name: str, path: str, kind: str, *,
                log: str | None = None, inputs: dict[str, Any] | None = None) -> None:
        self.paths[task_id] = path
        self.events.emit("task_started", task_id=task_id, parent_id=parent_id, name=name, path=path, kind=kind,
                         log=log, inputs=inputs or {})

    def finished(self, task_id: str, state: str, *, error: str | None = None, cache_hit: bool = False,
                 parameters: dict[str, Any] | None = None, artifacts: dict[str, list[Artifact]] | None = None,
                 detail: dict[str, Any] | None = None, code: int | None = None) -> None:
        if error and state == "FAILED":
            with self.lock:
                self.failures.append(Failure(error, code, self.paths.get(task_id, "")))
        flat = [{"key": key, "name": a.get("name") or key, "uri": a.get("uri", ""),
                 "schema_title": a.get("type", {}).get("schemaTitle", "system.Artifact"),
                 "metadata": a.get("metadata", {})}
                for key, group in (artifacts or {}).items() for a in group]
        self.events.emit("task_finished", task_id=task_id, state=state, error=error, cache_hit=cache_hit,
                         parameters=parameters or {}, artifacts=flat, detail=detail or {},
                         **({"code": code} if code is not None else {}))

    def first_failure(self, inside: str) -> Failure | None:
        """The first failure recorded under the DAG at path ``inside`` ("" for the whole run)."""
        with self.lock:
            return next((f for f in self.failures if not inside or f.path.startswith(f"{inside}/")), None)

    def skipped(self, task_id: str, parent_id: str | None, name: str, path: str, kind: str, why: str) -> None:
        self.started(task_id, parent_id, name, path, kind)
        self.finished(task_id, "SKIPPED", detail={"reason": why})


def prior_tasks(path: Any) -> dict[str, dict[str, Any]]:
    """What an interrupted run recorded, by task path: id, kind, and for finished tasks state and outputs.

    Read by the next worker of a resumed run: a task that SUCCEEDED is not run again, and every
    task keeps its id, so the record has one row per task however often the run resumed.
    """
    import json
    from pathlib import Path

    tasks: dict[str, dict[str, Any]] = {}
    by_id: dict[str, dict[str, Any]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return tasks
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut by the crash
        if event.get("event") == "task_started":
            entry = {"task_id": event["task_id"], "kind": event.get("kind"), "state": None}
            by_id[event["task_id"]] = tasks[event["path"]] = entry
        elif event.get("event") == "task_finished" and event.get("task_id") in by_id:
            entry = by_id[event["task_id"]]
            artifacts: dict[str, list[Artifact]] = {}
            for art in event.get("artifacts") or []:
                artifacts.setdefault(art["key"], []).append(
                    {"name": art.get("name"), "uri": art.get("uri", ""), "metadata": art.get("metadata") or {},
                     "type": {"schemaTitle": art.get("schema_title", "system.Artifact")}})
            entry.update(state=event.get("state"), parameters=event.get("parameters") or {}, artifacts=artifacts,
                         error=event.get("error"), code=event.get("code"))
    return tasks
