"""An executor task from resolved inputs to recorded outputs: cache, importer, PVC, process, retries.

Resource requests (cpu/memory limits, accelerators) and Kubernetes scheduling settings have no
meaning on this machine; they are not silently dropped but said in the task's log and in its
task details (issue 8, item 12).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from kfbox.config import Settings
from kfbox.errors import KfboxError
from kfbox.pipelines import containers, sandbox, secret_values
from kfbox.pipelines import spec as specs
from kfbox.pipelines.forkserver import TaskForker
from kfbox.pipelines.importer import fetch_artifact
from kfbox.pipelines.mounts import Mounts
from kfbox.pipelines.orchestrator import task_config, workspace
from kfbox.pipelines.orchestrator.backoff import backoff
from kfbox.pipelines.orchestrator.launch import LOCAL_KEY, Launcher, command_line, executor_input, expand, read_outputs
from kfbox.pipelines.orchestrator.names import inside
from kfbox.pipelines.orchestrator.values import (
    CANCELLED,
    DEADLINE_EXCEEDED,
    FAILED_PRECONDITION,
    UNKNOWN,
    Artifact,
    ResolveError,
    Result,
    Scope,
    fill,
    job_placeholders,
    resolve_inputs,
)
from kfbox.pipelines.requirements import VenvCache

if TYPE_CHECKING:
    from kfbox.pipelines.orchestrator.dag import Engine

_RESOURCE_FIELDS = ("cpuLimit", "memoryLimit", "cpuRequest", "memoryRequest", "resourceCpuLimit",
                    "resourceMemoryLimit", "resourceCpuRequest", "resourceMemoryRequest", "accelerator")


class Outcome(NamedTuple):
    """One attempt of a task; ``code`` is the google.rpc.Code of a failure (values.UNKNOWN, ...)."""

    state: str
    parameters: dict[str, Any]
    artifacts: dict[str, list[Artifact]]
    error: str | None = None
    cache_hit: bool = False
    code: int | None = None


class Executor:
    def __init__(self, engine: Engine, slots: threading.BoundedSemaphore) -> None:
        self.engine = engine
        self.slots = slots
        job = engine.job
        self.tasks_root = Path(job["logs_dir"])
        self.artifacts_root = Path(job["artifacts_root"])
        self.cache_root = Path(job["cache_root"])
        self.mounts = Mounts(Path(job["pvc_root"]), engine.run_id, {"platforms": {"kubernetes": {
            "deploymentSpec": {"executors": engine.pipeline.kubernetes}}}})
        self.launcher = Launcher(None, VenvCache(Path(job["venvs_dir"])))
        self.forker: TaskForker | None = None
        self.secret_env = _take_secret_env(self.tasks_root.parent / "secret-env.json")
        self._sandbox_problem: str | None = None  # None: not asked yet; "": mount namespaces work
        self.base_env = dict(os.environ)  # the worker's environment, copied once (not decoded again per task)

    def start(self, forker: TaskForker | None) -> None:
        self.forker = forker
        self.launcher.forker = forker

    def close(self) -> None:
        if self.forker is not None:
            self.forker.close()

    def run(self, name: str, task: dict[str, Any], component: dict[str, Any], scope: Scope, path: str,
            task_id: str, parent_id: str) -> Result:
        engine = self.engine
        label = component.get("executorLabel", "")
        executor = engine.pipeline.executor(label)
        kind = "importer" if "importer" in executor else "container"
        folder = inside(self.tasks_root, *path.split("/"))
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "task.log"
        policy = task.get("retryPolicy", {})
        attempts = int(policy.get("maxRetryCount") or 0) + 1
        warnings = self.ignored_settings(executor, label)
        with open(log, "ab") as handle:
            for line in warnings:
                handle.write(f"[kfbox] {line}\n".encode())
        recorded = False
        for attempt in range(attempts):
            placeholders = job_placeholders(engine.context, name, task_id)
            if engine.pipeline.workspace:
                placeholders[workspace.PLACEHOLDER] = self.workspace_mount()
            try:
                parameters, artifacts = resolve_inputs(task, component, scope, placeholders, engine.context,
                                                       attempt + scope.retries)
            except ResolveError as exc:
                return self._fail(task_id, parent_id, name, path, kind, log, recorded,
                                  f"Task {path!r} could not start: {exc}", FAILED_PRECONDITION)
            if not recorded:
                engine.recorder.started(task_id, parent_id, name, path, kind, log=str(log),
                                        inputs={"parameters": parameters,
                                                "artifacts": {k: [a.get("uri") for a in v]
                                                              for k, v in artifacts.items()}})
                recorded = True
            detail: dict[str, Any] = {"attempt": attempt, "warnings": warnings,
                                      "pod_name": f"{engine.context.resource_name}-{name}-{task_id[:8]}"}
            try:
                outcome = self.attempt(name, task, component, executor, parameters, artifacts, scope, path, folder,
                                       log, placeholders, detail)
            except (ResolveError, OSError, ValueError, KeyError, RuntimeError, KfboxError) as exc:
                outcome = Outcome("FAILED", {}, {}, f"Task {path!r} could not start: {exc}", code=FAILED_PRECONDITION)
            shutil.rmtree(folder / "volumes", ignore_errors=True)  # secret files live only while the task runs
            state = outcome.state
            if state == "SUCCEEDED" or engine.stop.is_set() or attempt + 1 == attempts:
                break
            delay = backoff(policy, attempt)
            with open(log, "ab") as handle:
                handle.write(f"[kfbox] attempt {attempt + 1} of {attempts} failed; retrying in {delay:g} s\n".encode())
            time.sleep(delay)
        error, code = outcome.error, outcome.code
        if engine.stop.is_set() and state != "SUCCEEDED":
            state, error, code = "CANCELED", None, CANCELLED
        detail["attempts"] = attempt + 1
        engine.recorder.finished(task_id, state, error=error, cache_hit=outcome.cache_hit,
                                 parameters=outcome.parameters, artifacts=outcome.artifacts, detail=detail, code=code)
        return Result(name, task_id, state, outcome.parameters, outcome.artifacts, error=error, code=code)

    def _fail(self, task_id: str, parent_id: str, name: str, path: str, kind: str, log: Path, recorded: bool,
              message: str, code: int) -> Result:
        if not recorded:
            self.engine.recorder.started(task_id, parent_id, name, path, kind, log=str(log))
        self.engine.recorder.finished(task_id, "FAILED", error=message, code=code)
        return Result(name, task_id, "FAILED", error=message, code=code)

    def attempt(self, name: str, task: dict[str, Any], component: dict[str, Any], executor: dict[str, Any],
                parameters: dict[str, Any], artifacts: dict[str, list[Artifact]], scope: Scope, path: str,
                folder: Path, log: Path, placeholders: dict[str, str], detail: dict[str, Any]) -> Outcome:
        """One attempt: run the task (or answer it from the cache) and read its outputs."""
        engine = self.engine
        if "importer" in executor:
            imported = self.imported(executor["importer"], parameters, folder / "imported")
            return Outcome("SUCCEEDED", {}, {"artifact": [imported]})
        container = executor.get("container", {})
        image = container.get("image", "")
        if image in specs.PVC_IMAGES:
            return Outcome("SUCCEEDED", self.pvc_task(image, parameters), {})
        key = None
        if task.get("cachingOptions", {}).get("enableCache") and self.engine.job.get("enable_caching", True):
            key = cache_key(component, container, parameters, artifacts)
            hit = self.cached(key)
            if hit is not None:
                with open(log, "ab") as handle:
                    handle.write(f"[kfbox] answered from the cache (key {key})\n".encode())
                return Outcome("SUCCEEDED", hit[0], hit[1], cache_hit=True)
        artifact_dir = inside(self.artifacts_root, engine.run_id, *path.split("/"))
        outputs_dir = folder / f"outputs-{detail['attempt']}"
        (outputs_dir / "parameters").mkdir(parents=True, exist_ok=True)
        label = component.get("executorLabel", "")
        platform = engine.pipeline.platform(label)
        names = _NameResolver(scope, parameters)
        passed, applied = task_config.options(component)
        config = task_config.TaskConfigBuilder(passed)
        container_env = [{"name": item["name"], "value": fill(str(item.get("value", "")), placeholders, parameters)}
                         for item in container.get("env", [])]
        config.container(container, container_env, lambda text: fill(text, placeholders, parameters))
        binds: dict[str, Path] = {}
        if engine.pipeline.workspace and workspace.needed(parameters, self.workspace_mount()):
            mount = self.workspace_mount()
            config.add_volume({"name": workspace.VOLUME_NAME, "persistentVolumeClaim": {
                "claimName": workspace.claim_name(engine.context.resource_name)}}, mount)
            if task_config.VOLUMES in applied and mount == workspace.MOUNT_PATH:
                binds[mount] = workspace.folder(self.tasks_root.parent)
            elif mount != workspace.MOUNT_PATH:
                with open(log, "ab") as handle:
                    handle.write(f"[kfbox] the run's workspace is {mount} (no mount namespace here for "
                                 f"{workspace.MOUNT_PATH})\n".encode())
        claims = self.mounts.claims(label, _ScopeStore(scope))
        config.platform(platform, claims, names, names.value)
        for config_input in task_config.inputs(component):  # what the driver writes into the ExecutorInput
            parameters = {**parameters, config_input: config.value()}
        spec = executor_input(parameters, artifacts, component, outputs_dir, artifact_dir)
        for group in spec["outputs"]["artifacts"].values():
            for art in group["artifacts"]:
                Path(art["uri"]).parent.mkdir(parents=True, exist_ok=True)
        task_env = self.task_env(name, detail, placeholders)
        if task_config.ENV in applied:  # a passed-through field reaches the task only with apply_to_task
            task_env.update({item["name"]: item["value"] for item in container_env})
            if platform.get("secretAsEnv") or platform.get("configMapAsEnv"):  # kfbox secrets and config maps
                task_env.update(secret_values.task_env(secret_values.SealedSecrets(self.secret_env), platform,
                                                       name_of=names))
            task_env.update(field_path_env(platform, detail["pod_name"]))
        env = {**self.base_env, **task_env}
        if task_config.VOLUMES in applied:
            binds.update(self.mounts.binds(claims))
            if platform.get("secretAsVolume") or platform.get("configMapAsVolume"):  # files in this task's folder
                binds.update(secret_values.write_task_volumes(secret_values.SealedSecrets(self.secret_env), platform,
                                                        folder / "volumes", name_of=names))
        timeout = self.timeout(component.get("executorLabel", ""))
        runtime = (containers.require_runtime(engine.job.get("container_runtime") or "auto", image)
                   if containers.is_container_component(executor) else None)
        for target in binds:
            sandbox.check_mount_path(target)
        if binds and (runtime is None or runtime.kind == "host"):  # in an image, the runtime mounts them
            self.require_sandbox(sorted(binds))
        if runtime is not None:
            containers.prepare_outputs(spec)
            command_parts = expand(container.get("command", []), spec, placeholders)
            if runtime.kind == "host" and command_parts[:1] == ["sh"] and shutil.which("bash"):
                # images' sh (busybox ash, bash) accepts [ a == b ]; this machine's may be dash, which does not
                command_parts[0] = "bash"
            launch = containers.build_launch(runtime, containers.ContainerTask(
                image=image, command=command_parts,
                args=expand(container.get("args", []), spec, placeholders), env=task_env,
                binds=[self.tasks_root.parent, self.artifacts_root / engine.run_id], volumes=binds,
                name=f"kfbox-{engine.run_id[:8]}-{detail['pod_name'][-8:]}",
                labels={containers.RUN_LABEL: engine.run_id}))
            if launch.log_line:
                with open(log, "ab") as handle:
                    handle.write(f"[{launch.log_line}]\n".encode())
            with self.slots:
                code, why = self.launcher.run_plain(launch.argv, {**env, **launch.env}, log, folder, timeout,
                                                    engine.stop, binds if runtime.kind == "host" else None)
        else:
            command = command_line(container, spec, placeholders)
            with self.slots:
                if engine.stop.is_set():
                    return Outcome("CANCELED", {}, {}, code=CANCELLED)
                code, why = self.launcher.run(command, env, log, folder, timeout, engine.stop, binds)
        if code != 0:
            reason = why or _last_exception(log)
            error = (f"Task {path!r} failed" + (f": {reason}" if reason else f" with exit code {code}")
                     + f". Logs: kfbox runs logs {engine.run_id} --task {path}")
            timed_out = why is not None and "exceeded its timeout" in why
            return Outcome("FAILED", {}, {}, error, code=DEADLINE_EXCEEDED if timed_out else UNKNOWN)
        outputs, produced = read_outputs(spec, component)
        if key is not None:
            self.store(key, outputs, produced)
        return Outcome("SUCCEEDED", outputs, produced)

    def workspace_mount(self) -> str:
        """Where tasks see the run's workspace: ``/kfp-workspace`` in their own mount namespace, else the
        folder's own path (no mount namespaces here)."""
        if self._sandbox_problem is None:
            self._sandbox_problem = sandbox.available() or ""
        if self._sandbox_problem:
            return str(workspace.folder(self.tasks_root.parent))
        return workspace.MOUNT_PATH

    def require_sandbox(self, paths: list[str]) -> None:
        """Mount paths need a private mount namespace; without one, refuse naming the setting (never a link
        at a system path)."""
        if self._sandbox_problem is None:
            self._sandbox_problem = sandbox.available() or ""
        if self._sandbox_problem:
            raise RuntimeError(f"mount paths {paths} (kfp-kubernetes mount_pvc / use_*_as_volume) need a private "
                               f"mount namespace, and {self._sandbox_problem}. Read the folder from "
                               "KFBOX_PVC_ROOT instead, or run on a cluster")

    def task_env(self, name: str, detail: dict[str, Any], placeholders: dict[str, str]) -> dict[str, str]:
        context = self.engine.context
        return {"PIPELINE_JOB_NAME": context.display_name, "PIPELINE_JOB_ID": context.run_id,
                "PIPELINE_JOB_RESOURCE_NAME": context.resource_name,
                "PIPELINE_JOB_CREATE_TIME_UTC": context.create_time,
                "PIPELINE_TASK_NAME": name, "PIPELINE_TASK_ID": placeholders["{{$.pipeline_task_uuid}}"],
                "PIPELINE_ROOT": context.pipeline_root, "KFP_POD_NAME": detail["pod_name"],
                "KFP_POD_UID": placeholders["{{$.pipeline_task_uuid}}"]}

    def ignored_settings(self, executor: dict[str, Any], label: str) -> list[str]:
        """What a cluster would honour and this machine cannot: each becomes a warning."""
        resources = executor.get("container", {}).get("resources", {})
        lines = []
        for field in _RESOURCE_FIELDS:
            if resources.get(field):
                lines.append(f"resource setting {field}={resources[field]!r} is ignored locally (no limits or "
                             "accelerators are applied on this machine)")
        platform = self.engine.pipeline.platform(label)
        for feature in sorted(set(platform) & specs.SCHEDULING_ONLY - {"activeDeadlineSeconds"}):
            lines.append(f"kfp-kubernetes setting {feature!r} only steers Kubernetes scheduling; ignored locally")
        return lines

    def timeout(self, label: str) -> float | None:
        value = self.engine.pipeline.platform(label).get("activeDeadlineSeconds")
        return float(value) if value else None

    def imported(self, importer: dict[str, Any], parameters: dict[str, Any], dest: Path) -> Artifact:
        """The importer's artifact: its URI as given (what the run record shows, as on a cluster) and, under
        ``LOCAL_KEY``, the local file or folder a downstream task's ``.path`` opens (fetched into ``dest``)."""
        source = importer.get("artifactUri", {})
        uri = source.get("constant") if "constant" in source else parameters.get(source.get("runtimeParameter", ""))
        if isinstance(uri, dict):
            uri = uri.get("stringValue")
        if not uri:
            raise ResolveError(f"importer has no artifact URI: {source!r}")
        metadata = json.loads(fill(json.dumps(importer.get("metadata", {})), {}, parameters))
        kind = importer.get("typeSchema", {})
        local = fetch_artifact(str(uri), dest, self.importer_settings())
        return {"name": "artifact", "uri": str(uri), "metadata": metadata, LOCAL_KEY: str(local),
                "type": {"schemaTitle": kind.get("schemaTitle", "system.Artifact"),
                         "schemaVersion": kind.get("schemaVersion", "0.0.1")}}

    def importer_settings(self) -> Settings:
        """What :func:`fetch_artifact` needs: the job's S3 endpoint, cap and container runtime (oci://); keys
        from the worker's env."""
        given = self.engine.job.get("importer") or {}
        return dataclasses.replace(Settings(), s3_endpoint=given.get("s3_endpoint"),
                                   container_runtime=self.engine.job.get("container_runtime") or "auto",
                                   s3_access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
                                   s3_secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                                   importer_max_bytes=int(given.get("importer_max_bytes")
                                                          or Settings.importer_max_bytes))

    def pvc_task(self, image: str, parameters: dict[str, Any]) -> dict[str, Any]:
        if image == specs.CREATE_PVC_IMAGE:
            pvc = parameters.get("pvc_name") or f"{self.engine.run_id[:8]}{parameters.get('pvc_name_suffix') or ''}"
            self.mounts.folder(str(pvc)).mkdir(parents=True, exist_ok=True)
            return {"name": str(pvc)}
        shutil.rmtree(self.mounts.folder(str(parameters.get("pvc_name") or "")), ignore_errors=True)
        return {}

    # cache: outputs by a key over the component, its command and its resolved inputs
    def cached(self, key: str) -> tuple[dict[str, Any], dict[str, list[Artifact]]] | None:
        try:
            entry = json.loads((self.cache_root / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        for group in entry.get("artifacts", {}).values():
            for art in group:
                uri = art.get("uri", "")
                if uri.startswith("/") and not Path(uri).exists():
                    return None  # an output the cache points at was removed
        return entry.get("parameters", {}), entry.get("artifacts", {})

    def store(self, key: str, parameters: dict[str, Any], artifacts: dict[str, list[Artifact]]) -> None:
        self.cache_root.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_root / f"{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps({"parameters": parameters, "artifacts": artifacts}))
        os.replace(tmp, self.cache_root / f"{key}.json")


class _ScopeStore:
    """What :class:`Mounts` asks of kfp.local's io store, answered from a DAG scope."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def get_task_output(self, producer: str, key: str) -> Any:
        result = self.scope.results.get(producer)
        if result is None or key not in result.parameters:
            raise RuntimeError(f"mount_pvc: task {producer!r} has no output {key!r}")
        return result.parameters[key]

    def get_parent_input(self, name: str) -> Any:
        if name not in self.scope.parameters:
            raise RuntimeError(f"mount_pvc: the parent DAG has no input {name!r}")
        return self.scope.parameters[name]


_METADATA_FIELD = re.compile(r"^metadata\.(labels|annotations)\[['\"](.+)['\"]\]$")


def field_path_env(platform: dict[str, Any], pod_name: str) -> dict[str, str]:
    """``use_field_path_as_env``: the pod's name, namespace, and the labels/annotations of ``add_pod_label``
    / ``add_pod_annotation`` (this task's pod metadata), as a pod's downward API gives them."""
    metadata = platform.get("podMetadata") or {}
    env: dict[str, str] = {}
    for field in platform.get("fieldPathAsEnv") or []:
        path = str(field.get("fieldPath", ""))
        value = {"metadata.name": pod_name, "metadata.namespace": "kubeflow"}.get(path)
        match = _METADATA_FIELD.match(path)
        if match:
            value = (metadata.get(match.group(1)) or {}).get(match.group(2), "")  # absent: "", as the API gives
        if value is not None:
            env[str(field.get("name"))] = str(value)
    return env


class _NameResolver:
    """A kfp-kubernetes secret/config map name: a constant, the parent DAG's input or a sibling's output."""

    def __init__(self, scope: Scope, parameters: dict[str, Any]) -> None:
        self.scope = scope
        self.parameters = parameters

    def __call__(self, entry: Any, field: str) -> str:
        value: Any = entry.get(field) or self.value(entry.get(f"{field}Parameter") or {})
        if not value:
            raise ResolveError(f"kfp-kubernetes {field} has no value here: {dict(entry)!r}")
        return str(value)

    def value(self, source: dict[str, Any]) -> Any:
        """An IR input spec's value: a constant, the parent DAG's input or a sibling's output (JSON text parsed)."""
        value: Any = source.get("runtimeValue", {}).get("constant")
        if value is None and "componentInputParameter" in source:
            value = self.scope.parameters.get(source["componentInputParameter"])
        if value is None and "taskOutputParameter" in source:
            ref = source["taskOutputParameter"]
            result = self.scope.results.get(ref.get("producerTask", ""))
            value = result.parameters.get(ref.get("outputParameterKey", "")) if result else None
        if isinstance(value, str) and value.strip().startswith(("{", "[")):
            value = json.loads(value)
        return value


def _take_secret_env(path: Path) -> dict[str, dict[str, dict[str, str]]]:
    """The secret and config map values the server resolved for this run; the file goes once read."""
    try:
        values: dict[str, dict[str, dict[str, str]]] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    path.unlink(missing_ok=True)
    return values


def cache_key(component: dict[str, Any], container: dict[str, Any], parameters: dict[str, Any],
              artifacts: dict[str, list[Artifact]]) -> str:
    body = {"component": {k: v for k, v in component.items() if k != "executorLabel"}, "container": container,
            "parameters": parameters, "artifacts": {k: [a.get("uri") for a in v] for k, v in artifacts.items()}}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]




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
