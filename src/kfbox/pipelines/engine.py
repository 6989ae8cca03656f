"""Runs one pipeline through ``kfp.local`` inside the worker process, observing every task.

kfp.local is the executor; kfbox adds what a platform needs around it through two seams:

* ``task_executor.execute_single_task`` -- wrapped to report each task's start, end,
  outputs and cache hits (kfp.local's own cache, rooted in the kfbox home), to create
  PVC folders for kfp-kubernetes ``CreatePVC``/``DeletePVC`` and link ``mount_pvc`` paths;
* ``subprocess_task_handler.run_local_subprocess`` -- replaced so each task writes to its
  own log file, runs in the worker's process group, and gets its requirements from the
  running interpreter or a cached venv instead of a fresh pip install.

Artifacts land in ``<home>/artifacts/<run>/<task>/...`` because the pipeline's resource
name is the run id.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from kfbox.pipelines import spec as specs
from kfbox.pipelines.events import EventWriter
from kfbox.pipelines.forkserver import TaskForker
from kfbox.pipelines.mounts import Mounts
from kfbox.pipelines.requirements import Requirements, VenvBuildError, VenvCache, strip_prelude

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


_warm_forker: TaskForker | None = None


def preload() -> None:
    """Import the modules a run uses (the slow part of a worker's start), for spare workers,
    and start the task server, which imports kfp's executor meanwhile."""
    global _warm_forker
    from google.protobuf import json_format  # noqa: F401
    from kfp import dsl, local  # noqa: F401
    from kfp.local import pipeline_orchestrator, subprocess_task_handler  # noqa: F401
    from kfp.local.orchestrator import enhanced_dag_orchestrator, task_executor  # noqa: F401
    from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: F401

    _warm_forker = TaskForker()


def _task_forker(enabled: bool) -> TaskForker | None:
    """The spare worker's task server when there is one, else a new one; None when forking is off."""
    global _warm_forker
    forker, _warm_forker = _warm_forker, None
    if not enabled:
        if forker is not None:
            forker.close()
        return None
    return forker or TaskForker()


class _Task:
    def __init__(self, task_id: str, path: str, log: Path) -> None:
        self.task_id = task_id
        self.path = path
        self.log = log
        self.executed = False


class Engine:
    """One run: ``Engine(job, events).run()`` returns the final state and error message."""

    def __init__(self, job: dict[str, Any], events: EventWriter) -> None:
        self.job = job
        self.run_id: str = job["run_id"]
        self.events = events
        self.logs_dir = Path(job["logs_dir"])
        self.venvs = VenvCache(Path(job["venvs_dir"]))
        self.mounts = Mounts(Path(job["pvc_root"]), self.run_id, specs.platform_part(job["pipeline_spec"]))
        self.current = threading.local()
        self.lock = threading.Lock()
        self.scopes: dict[str, str] = {}
        self.scope_failed: set[str] = set()
        self.failures: list[str] = []
        self.forker: TaskForker | None = None

    def run(self) -> tuple[str, str | None]:
        from google.protobuf import json_format
        from kfp import local
        from kfp.local import executor_input_utils, pipeline_orchestrator, subprocess_task_handler
        from kfp.local.orchestrator import task_executor
        from kfp.pipeline_spec import pipeline_spec_pb2

        from kfbox.pipelines import kfp_local_fixes

        kfp_local_fixes.apply()
        pipeline = json_format.ParseDict(specs.pipeline_part(self.job["pipeline_spec"]),
                                         pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=True)
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=self.job["artifacts_root"],
                   raise_on_error=True, enable_caching=True, cache_root=self.job["cache_root"])
        executor_input_utils.get_local_pipeline_resource_name = lambda _name: self.run_id
        original_execute = task_executor.execute_single_task
        task_executor.execute_single_task = lambda **kw: self._execute(original_execute, kw)
        subprocess_task_handler.run_local_subprocess = self._subprocess
        self.forker = _task_forker(self.job.get("fork_tasks", True))
        try:
            pipeline_orchestrator.run_local_pipeline(pipeline, dict(self.job["parameters"]))
        except Exception as exc:  # noqa: BLE001 - kfp.local raises RuntimeError on failure, anything on a bug
            self._close_scopes()
            return "FAILED", self.failures[0] if self.failures else _ANSI.sub("", f"{type(exc).__name__}: {exc}")
        finally:
            if self.forker is not None:
                self.forker.close()
        self._close_scopes()
        if self.failures:
            return "FAILED", self.failures[0]
        return "SUCCEEDED", None

    # seam 1: one task
    def _execute(self, original: Any, kw: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        from kfp.local import status

        scope = kw["pipeline_resource_name"][len(self.run_id):].strip("/")
        parent_id = self._scope(scope)
        name = kw["task_name"]
        path = f"{scope}/{name}" if scope else name
        component = kw["components"][kw["task_spec"].component_ref.name]
        executor = kw["executors"][component.executor_label]
        kind = executor.WhichOneof("spec")
        task = _Task(str(uuid.uuid4()), path, self.logs_dir / (_SAFE.sub("_", path) + ".log"))
        task.log.parent.mkdir(parents=True, exist_ok=True)
        self.events.emit("task_started", task_id=task.task_id, parent_id=parent_id, name=name, path=path,
                         kind=kind, log=str(task.log))
        self.current.task = task
        image = executor.container.image if kind == "container" else ""
        try:
            if image in specs.PVC_IMAGES:
                outputs, result = self.mounts.run_pvc_task(image, kw), status.Status.SUCCESS
            else:
                self.mounts.prepare(component.executor_label, kw["io_store"])
                outputs, result = original(**kw)
        except Exception as exc:
            self._finish(task, scope, "FAILED", f"Task {path!r} could not start: {exc}")
            raise
        finally:
            self.current.task = None
        if result == status.Status.SUCCESS:
            self._finish(task, scope, "SUCCEEDED", None, outputs, cache_hit=kind == "container"
                         and image not in specs.PVC_IMAGES and not task.executed)
        else:
            self._finish(task, scope, "FAILED", self._failure(task))
        return outputs, result

    def _finish(self, task: _Task, scope: str, state: str, error: str | None,
                outputs: dict[str, Any] | None = None, cache_hit: bool = False) -> None:
        parameters, artifacts = _split_outputs(outputs or {})
        if error:
            with self.lock:
                self.failures.append(error)
                self.scope_failed.update(_prefixes(scope))
        self.events.emit("task_finished", task_id=task.task_id, state=state, error=error, cache_hit=cache_hit,
                         parameters=parameters, artifacts=artifacts)

    def _failure(self, task: _Task) -> str:
        reason = _last_exception(task.log)
        return (f"Task {task.path!r} failed" + (f": {reason}" if reason else "")
                + f". Logs: kfbox runs logs {self.run_id} --task {task.path}")

    def _scope(self, scope: str) -> str | None:
        """Task ids of the DAG scopes (ParallelFor, its iterations) a task runs in, created on first use."""
        parent: str | None = None
        with self.lock:
            for prefix in _prefixes(scope):
                if prefix not in self.scopes:
                    self.scopes[prefix] = str(uuid.uuid4())
                    self.events.emit("task_started", task_id=self.scopes[prefix], parent_id=parent,
                                     name=prefix.rsplit("/", 1)[-1], path=prefix, kind="dag", log=None)
                parent = self.scopes[prefix]
        return parent

    def _close_scopes(self) -> None:
        for prefix, task_id in self.scopes.items():
            failed = prefix in self.scope_failed
            self.events.emit("task_finished", task_id=task_id, state="FAILED" if failed else "SUCCEEDED",
                             error=None, cache_hit=False, parameters={}, artifacts=[])

    # seam 2: the task's process
    def _subprocess(self, full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        task: _Task | None = getattr(self.current, "task", None)
        env = {**os.environ, **(env_vars or {})}
        if task is None:  # not a pipeline task (should not happen); keep kfp.local's behaviour
            return subprocess.call(full_command, env=env)
        task.executed = True
        with open(task.log, "ab") as log:
            python = sys.executable
            reqs = Requirements.from_command(full_command)
            if reqs is not None and reqs.packages and not reqs.satisfied():
                try:
                    python = self.venvs.python_for(reqs, log, env)
                except VenvBuildError as exc:
                    log.write(f"[kfbox] {exc}\n".encode())
                    return 1
            elif reqs is not None and reqs.packages:
                log.write(f"[kfbox] {list(reqs.packages)} already installed; running without pip\n".encode())
            log.flush()
            command = strip_prelude(full_command, python)
            if python == sys.executable and self.forker is not None:
                code = self.forker.run(command, env, task.log, reqs.packages if reqs else ())
                if code is not None:
                    return code
            return subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def _prefixes(scope: str) -> list[str]:
    """``a/for-loop-2-iteration-0`` -> ``a``, ``a/for-loop-2``, ``a/for-loop-2-iteration-0``."""
    result: list[str] = []
    parts: list[str] = []
    for segment in [s for s in scope.split("/") if s]:
        if "-iteration-" in segment:
            group = "/".join([*parts, segment.rsplit("-iteration-", 1)[0]])
            if group not in result:
                result.append(group)
        parts.append(segment)
        result.append("/".join(parts))
    return result


def _split_outputs(outputs: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from kfp import dsl

    parameters: dict[str, Any] = {}
    artifacts: list[dict[str, Any]] = []
    for key, value in outputs.items():
        items = value if isinstance(value, list) else [value]
        if items and all(isinstance(v, dsl.Artifact) for v in items):
            for art in items:
                artifacts.append({"key": key, "name": art.name, "uri": art.uri,
                                  "schema_title": type(art).schema_title, "metadata": dict(art.metadata)})
        else:
            parameters[key] = value
    return parameters, artifacts


def _last_exception(log: Path) -> str | None:
    """The final line of the last traceback in a task log: what the component raised."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("Traceback (most recent call last)"):
            tail = [line for line in lines[index + 1:] if line.strip() and not line.startswith((" ", "\t"))]
            return tail[-1].strip() if tail else None
    bad = [line for line in lines if line.startswith("[kfbox]") and "could not" in line]
    return bad[-1].removeprefix("[kfbox] ") if bad else None
