"""Container components (``dsl.container_component``, ``ContainerSpec``, YAML components) locally.

Python components run kfp's ``executor_main`` on this machine whatever their image. A
container component *is* its image, so it needs an engine; ``settings.container_runtime``
(``KFBOX_CONTAINER_RUNTIME``, ``kfbox up --containers``) picks one:

* ``auto`` (default): docker, else podman -- only when the engine actually answers
  (``docker info`` succeeds; an installed CLI whose daemon is down does not count);
* ``docker`` / ``podman``: that one, refused when it does not answer;
* ``host``: the command runs on this machine, and the task log says the image was not used.

With none usable, :func:`require_runtime` raises :class:`InvalidInput` naming what is missing
and the setting -- the engine calls it at submit, so such a run is a 400, never a hang.

The run follows kfp.local's ``DockerRunner`` and the KFP launcher: placeholders are already
resolved by the engine to paths under the run's folder; the folders to share (``binds``) are
mounted at the same absolute path, so the resolved paths mean the same inside; output folders
are made first (the launcher's ``prepareOutputFolders``), so ``echo x > $OUTPUT`` works; after
the run the engine reads output parameter files and artifacts as for any task. The spec's
``command`` replaces the image's entrypoint and ``args`` follow it, as on Kubernetes. Env values
travel in the process environment (``-e NAME``), never on the command line where ``ps`` shows it.

Interface (for the engine)::

    runtime = require_runtime(settings)                      # at submit, when the spec has one
    prepare_outputs(executor_input)                          # before start
    launch = build_launch(runtime, ContainerTask(image=..., command=[...], args=[...], env={...},
                                                 binds=[run_dir], volumes={"/mnt/db": secret_folder},
                                                 name=f"kfbox-{run_id[:8]}-{task_id[:8]}"))
    log.write(launch.log_line)                               # host mode: "image ... was not used"
    subprocess.Popen(launch.argv, env={**os.environ, **launch.env}, ...)
    # on cancel, after killing the run's processes (the server does it):
    remove_run_containers(runtime, run_id)                   # every container labelled with the run

Killing ``docker run`` (the worker's process group on cancel) does not stop its container: the
container is the engine's child, not the CLI's. So each container carries the label
``kfbox.run=<run id>`` and a cancelled run's containers are removed by that label.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kfbox.errors import InvalidInput

log = logging.getLogger(__name__)

ENGINES = ("docker", "podman")
PROBE_TIMEOUT_SECONDS = 5.0
PROBE_CACHE_SECONDS = 30.0
EXECUTOR_MODULE = "kfp.dsl.executor_main"
RUN_LABEL = "kfbox.run"  # label on every task container: the run it belongs to
REMOVE_TIMEOUT_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class Runtime:
    kind: str  # "docker", "podman" or "host"
    executable: str | None = None  # the engine's CLI; None for host


@dataclasses.dataclass(frozen=True)
class ContainerTask:
    """One container task, placeholders resolved. ``command`` and ``args`` as in the ContainerSpec."""

    image: str
    command: Sequence[str]
    args: Sequence[str] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    binds: Sequence[Path] = ()
    """Host folders mounted read-write at the same absolute path (the run's folder)."""
    volumes: Mapping[str, Path] = dataclasses.field(default_factory=dict)
    """Container path -> host folder (kfp-kubernetes PVC, secret and config map volumes)."""
    name: str | None = None
    """Container name, so a cancelled task's container can be removed with :func:`stop_command`."""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Container labels (:data:`RUN_LABEL`: the run, so :func:`remove_run_containers` finds it)."""


@dataclasses.dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str] = dataclasses.field(repr=False)
    """Add to the environment of the process started with ``argv`` (values for ``-e NAME``)."""
    log_line: str | None = None
    """A line for the task log before it starts (host mode: the image was not used)."""


def is_container_component(executor: Mapping[str, Any]) -> bool:
    """True for an executor that must run in its image (not a Python component, not an importer)."""
    container = executor.get("container")
    if not isinstance(container, Mapping):
        return False
    command = [*container.get("command", []), *container.get("args", [])]
    return not any(EXECUTOR_MODULE in str(part) for part in command)


Probe = Callable[[str], bool]
_probed: dict[str, tuple[float, bool]] = {}


def engine_answers(executable: str) -> bool:
    """``<engine> info`` succeeds: the CLI is there *and* its daemon/service answers (cached 30 s)."""
    cached = _probed.get(executable)
    if cached and time.monotonic() - cached[0] < PROBE_CACHE_SECONDS:
        return cached[1]
    try:
        done = subprocess.run([executable, "info", "--format", "{{json .}}"], capture_output=True,
                              timeout=PROBE_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL, check=False)
        ok = done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    _probed[executable] = (time.monotonic(), ok)
    return ok


def detect_runtime(setting: str, which: Callable[[str], str | None] = shutil.which,
                   probe: Probe = engine_answers) -> Runtime | None:
    """The runtime ``setting`` names, or ``None`` when it (or, for auto, every engine) is unusable."""
    if setting == "host":
        return Runtime("host")
    candidates = ENGINES if setting == "auto" else (setting,)
    for engine in candidates:
        executable = which(engine)
        if executable and probe(executable):
            return Runtime(engine, executable)
    return None


def require_runtime(setting: str, image: str = "", which: Callable[[str], str | None] = shutil.which,
                    probe: Probe = engine_answers) -> Runtime:
    """:func:`detect_runtime`, or InvalidInput saying what is missing and how to choose."""
    if setting not in ("auto", "host", *ENGINES):
        raise InvalidInput(f"Container runtime {setting!r} is not one of auto, docker, podman, host "
                           "(KFBOX_CONTAINER_RUNTIME or kfbox up --containers).")
    runtime = detect_runtime(setting, which, probe)
    if runtime is not None:
        return runtime
    what = f"container component (image {image!r})" if image else "container component"
    wanted = "docker or podman" if setting == "auto" else setting
    found = [e for e in (ENGINES if setting == "auto" else (setting,)) if which(e)]
    state = (f"{', '.join(found)} is installed but its engine does not answer ('{found[0]} info' fails; is the "
             "daemon running?)" if found else f"no {wanted} command is on PATH")
    raise InvalidInput(f"This pipeline has a {what}, which needs {wanted}: {state}. Start an engine, or run "
                       "container commands on this machine without their image: KFBOX_CONTAINER_RUNTIME=host "
                       "(kfbox up --containers host).")


def prepare_outputs(executor_input: Mapping[str, Any]) -> None:
    """Make the folders outputs go to, as the KFP launcher does before a container starts."""
    outputs = executor_input.get("outputs") or {}
    for parameter in (outputs.get("parameters") or {}).values():
        if parameter.get("outputFile"):
            Path(parameter["outputFile"]).parent.mkdir(parents=True, exist_ok=True)
    for entry in (outputs.get("artifacts") or {}).values():
        for artifact in entry.get("artifacts") or []:
            path = _local_path(str(artifact.get("uri") or ""))
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
    if outputs.get("outputFile"):
        Path(outputs["outputFile"]).parent.mkdir(parents=True, exist_ok=True)


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    return Path(uri) if uri.startswith("/") else None


def build_launch(runtime: Runtime, task: ContainerTask) -> Launch:
    """The command line that runs ``task`` with ``runtime``."""
    if runtime.kind == "host":
        if not task.command and not task.args:
            raise InvalidInput(f"Container component (image {task.image!r}) has no command or args; with "
                               "KFBOX_CONTAINER_RUNTIME=host there is no image entrypoint to fall back on.")
        note = (f"kfbox: image {task.image!r} was not used: KFBOX_CONTAINER_RUNTIME=host runs the command on "
                "this machine")
        log.info("%s (%s)", note, " ".join(task.command[:1] or task.args[:1]))
        return Launch(argv=[*task.command, *task.args], env=dict(task.env), log_line=note)
    executable = runtime.executable or runtime.kind
    argv = [executable, "run", "--rm", "--init"]
    if task.name:
        argv += ["--name", task.name]
    for key, value in sorted(task.labels.items()):
        argv += ["--label", f"{key}={value}"]
    if hasattr(os, "getuid") and os.getuid() != 0:
        # outputs land in the home as this user's files, not root's
        argv += ["--userns=keep-id"] if runtime.kind == "podman" else ["--user", f"{os.getuid()}:{os.getgid()}"]
    for folder in task.binds:
        argv += ["--volume", f"{folder}:{folder}:rw"]
    for target, source in sorted(task.volumes.items()):
        argv += ["--volume", f"{source}:{target}"]
    for name in sorted(task.env):
        argv += ["--env", name]  # the value comes from the environment of the docker CLI, not argv
    if task.command:
        argv += ["--entrypoint", task.command[0], _image(task.image), *task.command[1:], *task.args]
    else:
        argv += [_image(task.image), *task.args]
    return Launch(argv=argv, env=dict(task.env))


def _image(image: str) -> str:
    if not image:
        raise InvalidInput("Container component has no image; set ContainerSpec(image=...).")
    return image


def stop_command(runtime: Runtime, name: str) -> list[str] | None:
    """Remove a task's container (killing ``docker run`` leaves the container running)."""
    if runtime.kind == "host":
        return None
    return [runtime.executable or runtime.kind, "rm", "--force", name]


def remove_run_containers(runtime: Runtime, run_id: str) -> list[str]:
    """Remove (``rm --force``: stop, then delete) every container labelled with ``run_id``; their ids.

    Errors are logged, not raised: the run is cancelled either way, and a container that cannot be
    removed is named in the server log for the user to remove.
    """
    if runtime.kind == "host":
        return []
    executable = runtime.executable or runtime.kind
    listing = [executable, "ps", "--all", "--quiet", "--filter", f"label={RUN_LABEL}={run_id}"]
    try:
        found = subprocess.run(listing, capture_output=True, text=True, timeout=REMOVE_TIMEOUT_SECONDS,
                               stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not list the containers of run %s (%s): %s", run_id, " ".join(listing), exc)
        return []
    ids = found.stdout.split()
    remove_containers(runtime, ids, f"run {run_id}")
    return ids


def labelled_containers(runtime: Runtime) -> dict[str, list[str]]:
    """Every container carrying :data:`RUN_LABEL`, by run id (``ps`` then one ``inspect``); ``{}`` on errors.

    What a server killed with SIGKILL leaves behind: killing ``docker run`` does not stop its container,
    so the next start looks for them here.
    """
    if runtime.kind == "host":
        return {}
    executable = runtime.executable or runtime.kind
    template = f'{{{{.Id}}}} {{{{index .Config.Labels "{RUN_LABEL}"}}}}'
    try:
        listed = subprocess.run([executable, "ps", "--all", "--quiet", "--filter", f"label={RUN_LABEL}"],
                                capture_output=True, text=True, timeout=REMOVE_TIMEOUT_SECONDS,
                                stdin=subprocess.DEVNULL, check=False)
        ids = listed.stdout.split()
        if not ids:
            return {}
        inspected = subprocess.run([executable, "inspect", "--format", template, *ids], capture_output=True,
                                   text=True, timeout=REMOVE_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not list kfbox's containers with %s: %s", executable, exc)
        return {}
    found: dict[str, list[str]] = {}
    for line in inspected.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            found.setdefault(parts[1], []).append(parts[0])
    return found


def remove_containers(runtime: Runtime, ids: Sequence[str], whose: str) -> None:
    """``rm --force`` (stop, then delete) ``ids``; a failure is logged, naming them for the user to remove."""
    if not ids or runtime.kind == "host":
        return
    executable = runtime.executable or runtime.kind
    try:
        removed = subprocess.run([executable, "rm", "--force", *ids], capture_output=True, text=True,
                                 timeout=REMOVE_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not remove the containers %s of %s: %s", list(ids), whose, exc)
        return
    if removed.returncode != 0:
        log.warning("could not remove the containers %s of %s: %s", list(ids), whose, removed.stderr.strip())


def remove_containers_of(setting: str, run_id: str, spec: Mapping[str, Any]) -> list[str]:
    """:func:`remove_run_containers` for a run whose pipeline (``spec``) has container components, with the
    runtime ``setting`` (``KFBOX_CONTAINER_RUNTIME``); nothing to do (and no engine probed) otherwise."""
    from kfbox.pipelines import spec as specs

    executors = specs.pipeline_part(dict(spec)).get("deploymentSpec", {}).get("executors", {})
    if setting == "host" or not any(is_container_component(e) and e["container"].get("image") not in specs.PVC_IMAGES
                                    for e in executors.values()):
        return []
    runtime = detect_runtime(setting)
    return remove_run_containers(runtime, run_id) if runtime is not None else []
