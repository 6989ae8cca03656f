"""Scheduling the IR: DAGs with real parallelism, loops, conditions, exit handlers, retries.

Semantics of the KFP backend (``compiler/argocompiler/dag.go``, ``driver/``):

* a task starts once every ``dependentTasks`` entry has finished, and runs only if all of them
  SUCCEEDED -- otherwise it is SKIPPED (Argo's ``depends: a.Succeeded && ...``);
* an exit task or ``ignore_upstream_failure`` (``triggerPolicy.strategy:
  ALL_UPSTREAM_TASKS_COMPLETED``) runs whatever its upstream's state;
* ``triggerPolicy.condition`` false: SKIPPED; a DAG fails when a child failed;
* a ParallelFor task runs its DAG once per item, ``iteratorPolicy.parallelismLimit`` at a time;
  its outputs are lists over iterations (``dsl.Collected``); a DAG's outputs take the first
  producer that has one (``dsl.OneOf``);
* ``retryPolicy``: up to ``maxRetryCount`` more attempts with exponential backoff, ``{{retries}}``
  being the attempt number.

Each DAG instance runs on its own thread; executor tasks also take a slot of the run's task
concurrency (``KFBOX_TASK_CONCURRENCY``, default: cores).
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kfbox.pipelines import spec as specs
from kfbox.pipelines.events import EventWriter
from kfbox.pipelines.forkserver import PRELOAD_MEMORY, TaskForker, remembered_preload
from kfbox.pipelines.orchestrator import ir
from kfbox.pipelines.orchestrator.backoff import backoff
from kfbox.pipelines.orchestrator.execute import Executor
from kfbox.pipelines.orchestrator.record import Failure, Recorder, prior_tasks
from kfbox.pipelines.orchestrator.values import (
    FAILED_PRECONDITION,
    Job,
    ResolveError,
    Result,
    Scope,
    collect,
    condition_holds,
    dag_outputs,
    job_placeholders,
    resolve_inputs,
)

_warm_forker: TaskForker | None = None


def preload() -> None:
    """Import what a run uses and start the task server (for spare workers), with the modules the last
    run's tasks imported (scikit-learn for iris) already in it. A spare works in the runs folder."""
    global _warm_forker
    from kfbox.pipelines.orchestrator import execute, launch  # noqa: F401

    runs = Path.cwd().parent if Path.cwd().name.startswith(".spare-") else Path.cwd()
    _warm_forker = TaskForker(remembered_preload(runs / PRELOAD_MEMORY), memory=runs / PRELOAD_MEMORY)


def _task_forker(enabled: bool, memory: Path) -> TaskForker | None:
    global _warm_forker
    forker, _warm_forker = _warm_forker, None
    if not enabled:
        if forker is not None:
            forker.close()
        return None
    if forker is None:
        return TaskForker(memory=memory)
    forker.normal_priority()
    return forker


class Engine:
    """One run: ``Engine(job, events).run()`` returns the final state and error message."""

    def __init__(self, job: dict[str, Any], events: EventWriter) -> None:
        self.job = job
        self.run_id: str = job["run_id"]
        spec = job["pipeline_spec"]
        self.pipeline = ir.Pipeline(specs.pipeline_part(spec), specs.platform_part(spec))
        self.recorder = Recorder(events)
        self.stop = threading.Event()
        name = re.sub(r"[^a-z0-9-]+", "-", self.pipeline.name.lower()).strip("-") or "pipeline"
        created = job.get("created_at") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.context = Job(run_id=self.run_id, display_name=job.get("display_name") or self.pipeline.name,
                           resource_name=f"{name}-{self.run_id[:8]}",
                           pipeline_root=job.get("pipeline_root") or job["artifacts_root"],
                           create_time=created, schedule_time=job.get("scheduled_at") or created)
        concurrency = int(job.get("task_concurrency") or os.cpu_count() or 1)
        self.executor = Executor(self, threading.BoundedSemaphore(max(1, concurrency)))
        # resumed after a restart: finished tasks keep their state; retried: only SUCCEEDED ones are kept
        self.prior = prior_tasks(events.path) if job.get("resume") or job.get("retry") else {}
        self.keep = ("SUCCEEDED",) if job.get("retry") else ("SUCCEEDED", "FAILED")

    def run(self) -> tuple[str, str | None]:
        forker = _task_forker(self.job.get("fork_tasks", True), Path(self.recorder.events.path).parent.parent
                              / PRELOAD_MEMORY)
        self.executor.start(forker)
        try:
            root_id = self.task_id("")
            self.recorder.started(root_id, None, self.pipeline.name, "", "dag",
                                  inputs={"parameters": self.job["parameters"]})
            definitions = self.pipeline.root.get("inputDefinitions", {}).get("parameters", {})
            parameters = {k: d["defaultValue"] for k, d in definitions.items() if "defaultValue" in d}
            parameters.update(self.job["parameters"])
            scope = Scope(parameters, {})
            state = self.run_dag(self.pipeline.root, scope, "", root_id)
            outputs, artifacts = dag_outputs(self.pipeline.root, scope)
            first = self.recorder.first_failure("") if state == "FAILED" else None
            error = first.message if first else None
            self.recorder.finished(root_id, state, error=error, parameters=outputs, artifacts=artifacts)
        finally:
            self.executor.close()
        if state != "SUCCEEDED":
            return "FAILED", error or "A task of the pipeline failed."
        return "SUCCEEDED", None

    # --- a DAG instance ---------------------------------------------------------------------
    def run_dag(self, component: dict[str, Any], scope: Scope, path: str, dag_id: str) -> str:
        """Run every task of one DAG instance; FAILED when a child failed, else SUCCEEDED."""
        pending = ir.tasks(component)
        names = set(pending)
        done: queue.Queue[tuple[str, Result]] = queue.Queue()
        running = 0
        while pending or running:
            progressed = True
            while progressed:
                progressed = False
                for name, task in list(pending.items()):
                    deps = [d for d in task.get("dependentTasks", []) if d in names]
                    if any(d not in scope.results for d in deps):
                        continue
                    del pending[name]
                    progressed = True
                    upstream = [scope.results[d] for d in deps]
                    blocked = [r.name for r in upstream if r.state != "SUCCEEDED"]
                    if (blocked and not ir.is_exit_task(task)) or self.stop.is_set():
                        task_path = f"{path}/{name}" if path else name
                        why = "the run was cancelled" if self.stop.is_set() else \
                            f"upstream task(s) {', '.join(blocked)} did not succeed"
                        scope.results[name] = self.skip(name, task, task_path, dag_id, why)
                        continue
                    running += 1
                    threading.Thread(target=self._report, args=(done, name, task, scope, path, dag_id),
                                     name=f"task-{name}", daemon=True).start()
            if not running:
                break
            name, result = done.get()
            running -= 1
            scope.results[name] = result
        for name in pending:  # dependencies that name no task of this DAG: nothing can start them
            scope.results[name] = Result(name, "", "SKIPPED", error="unresolvable dependencies")
        return "FAILED" if any(r.state in ("FAILED", "CANCELED") for r in scope.results.values()) else "SUCCEEDED"

    def _report(self, done: queue.Queue[tuple[str, Result]], name: str, task: dict[str, Any], scope: Scope,
                path: str, dag_id: str) -> None:
        done.put((name, self.run_task(name, task, scope, path, dag_id)))

    def task_id(self, path: str) -> str:
        """The task's id: the one it had before a restart, else a new one."""
        prior = self.prior.get(path)
        return str(prior["task_id"]) if prior else str(uuid.uuid4())

    def finished_before(self, name: str, path: str) -> Result | None:
        """A task that finished before a restart (or SUCCEEDED before a retry): its recorded result, not a rerun."""
        prior = self.prior.get(path)
        if not prior or prior["state"] not in self.keep or prior["kind"] == "dag":
            return None
        if prior["state"] == "FAILED":
            self.recorder.failures.append(Failure(prior.get("error") or f"Task {path!r} failed.", prior.get("code"),
                                                  path))
        return Result(name, prior["task_id"], prior["state"], dict(prior["parameters"]), dict(prior["artifacts"]),
                      error=prior.get("error"), code=prior.get("code"))

    def skip(self, name: str, task: dict[str, Any], path: str, parent_id: str, why: str) -> Result:
        task_id = self.task_id(path)
        self.recorder.skipped(task_id, parent_id, name, path, self.kind(task), why)
        return Result(name, task_id, "SKIPPED")

    def kind(self, task: dict[str, Any]) -> str:
        try:
            component = self.pipeline.component(task.get("componentRef", {}).get("name", ""))
        except KeyError:
            return "container"
        if "dag" in component:
            return "dag"
        label = component.get("executorLabel", "")
        return "importer" if "importer" in self.pipeline.executors.get(label, {}) else "container"

    # --- one task of a DAG ------------------------------------------------------------------
    def run_task(self, name: str, task: dict[str, Any], scope: Scope, parent_path: str, parent_id: str) -> Result:
        path = f"{parent_path}/{name}" if parent_path else name
        done = self.finished_before(name, path)
        if done is not None:
            return done
        task_id = self.task_id(path)
        try:
            component = self.pipeline.component(task.get("componentRef", {}).get("name", ""))
            placeholders = job_placeholders(self.context, name, task_id)
            parameters, artifacts = resolve_inputs(task, component, scope, placeholders, self.context)
            if not condition_holds(task, parameters):
                self.recorder.skipped(task_id, parent_id, name, path, self.kind(task),
                                      f"condition {task['triggerPolicy']['condition']!r} is false")
                return Result(name, task_id, "SKIPPED")
            items = ir.loop_items(task, parameters, artifacts)
        except (ResolveError, KeyError, ValueError) as exc:
            message = f"Task {path!r} could not start: {exc.args[0] if exc.args else exc}"
            self.recorder.started(task_id, parent_id, name, path, self.kind(task))
            self.recorder.finished(task_id, "FAILED", error=message, code=FAILED_PRECONDITION)
            return Result(name, task_id, "FAILED", error=message, code=FAILED_PRECONDITION)
        if items is not None:
            return self.run_loop(name, task, component, items, parameters, artifacts, path, task_id, parent_id, scope)
        if "dag" in component:
            return self.run_sub_dag(name, task, component, parameters, artifacts, path, task_id, parent_id, scope)
        return self.executor.run(name, task, component, scope, path, task_id, parent_id)

    def run_sub_dag(self, name: str, task: dict[str, Any], component: dict[str, Any], parameters: dict[str, Any],
                    artifacts: dict[str, list[Any]], path: str, task_id: str, parent_id: str, outer: Scope) -> Result:
        self.recorder.started(task_id, parent_id, name, path, "dag",
                              inputs={"parameters": parameters, "artifacts": _uris(artifacts)})
        attempts = int(task.get("retryPolicy", {}).get("maxRetryCount") or 0) + 1
        for attempt in range(attempts):
            sub = Scope(dict(parameters), dict(artifacts), retries=outer.retries + attempt)
            state = self.run_dag(component, sub, path, task_id)
            if state == "SUCCEEDED" or self.stop.is_set() or attempt + 1 == attempts:
                break
            time.sleep(backoff(task.get("retryPolicy", {}), attempt))
        outputs, produced = dag_outputs(component, sub)
        error = f"A task inside {path!r} failed." if state == "FAILED" else None
        return self._dag_finished(name, path, task_id, state, error, outputs, produced)

    def run_loop(self, name: str, task: dict[str, Any], component: dict[str, Any], items: list[Any],
                 parameters: dict[str, Any], artifacts: dict[str, list[Any]], path: str, task_id: str,
                 parent_id: str, outer: Scope) -> Result:
        self.recorder.started(task_id, parent_id, name, path, "dag",
                              inputs={"parameters": parameters, "artifacts": _uris(artifacts)})
        iterator = task.get("parameterIterator") or task.get("artifactIterator") or {}
        item_input = iterator.get("itemInput", "")
        limit = int(task.get("iteratorPolicy", {}).get("parallelismLimit") or 0)
        gate = threading.BoundedSemaphore(limit) if limit > 0 else None
        results: list[tuple[str, dict[str, Any], dict[str, list[Any]]] | None] = [None] * len(items)

        def iteration(index: int, item: Any) -> None:
            try:
                iteration_name = f"{name}-iteration-{index}"
                iteration_path = f"{path}/{iteration_name}"
                iteration_id = self.task_id(iteration_path)
                scope = Scope(dict(parameters), dict(artifacts), retries=outer.retries)
                if "artifactIterator" in task:
                    scope.artifacts[item_input] = [item]
                else:
                    scope.parameters[item_input] = item
                self.recorder.started(iteration_id, task_id, iteration_name, iteration_path, "dag",
                                      inputs={"parameters": {item_input: item} if "parameterIterator" in task else {}})
                state = self.run_dag(component, scope, iteration_path, iteration_id)
                outputs, produced = dag_outputs(component, scope)
                self.recorder.finished(iteration_id, state, parameters=outputs, artifacts=produced)
                results[index] = (state, outputs, produced)
            finally:
                if gate is not None:
                    gate.release()

        threads = []
        for index, item in enumerate(items):
            if gate is not None:
                gate.acquire()
            thread = threading.Thread(target=iteration, args=(index, item), name=f"{name}-{index}", daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        finished = [r for r in results if r is not None]
        state = "FAILED" if len(finished) < len(items) or any(r[0] == "FAILED" for r in finished) else "SUCCEEDED"
        outputs, produced = collect(component, [(r[1], r[2]) for r in finished])
        error = f"An iteration of {path!r} failed." if state == "FAILED" else None
        return self._dag_finished(name, path, task_id, state, error, outputs, produced)

    def _dag_finished(self, name: str, path: str, task_id: str, state: str, error: str | None,
                      outputs: dict[str, Any], produced: dict[str, list[Any]]) -> Result:
        """A DAG's record and result: a failed one carries the message and code of the first failure inside it
        (what an exit handler guarding it sees), as the failure of a task in it is the reason it failed."""
        first = self.recorder.first_failure(path) if error is not None else None
        code = first.code if first is not None else None
        self.recorder.finished(task_id, state, error=error, parameters=outputs, artifacts=produced, code=code)
        return Result(name, task_id, state, outputs, produced, error=first.message if first else error, code=code)


def _uris(artifacts: dict[str, list[Any]]) -> dict[str, list[str]]:
    return {k: [a.get("uri", "") for a in v] for k, v in artifacts.items()}


def task_folder(root: Path, path: str) -> Path:
    from kfbox.pipelines.orchestrator.names import inside

    return inside(root, *[p for p in path.split("/") if p])
