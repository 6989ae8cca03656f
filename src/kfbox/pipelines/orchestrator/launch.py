"""One executor task: its ExecutorInput, its command line, its process, its outputs.

Python components run kfp's own ``executor_main`` -- forked from the warm task server when the
running interpreter has the component's packages, else as the compiled command with a cached
venv's python. The task's files (ExecutorInput outputs, the component source) live in the
task's folder under the run's folder, which goes with the run (issue 8, item 4).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from kfbox.pipelines import sandbox
from kfbox.pipelines.forkserver import TaskForker
from kfbox.pipelines.orchestrator.values import Artifact, as_text
from kfbox.pipelines.requirements import Requirements, VenvBuildError, VenvCache, strip_prelude
from kfbox.server.processes import die_with_parent

LOCAL_KEY = "kfboxLocalPath"  # an imported artifact's local copy; the task gets it as its uri (kfp's .path)


def executor_input(parameters: dict[str, Any], artifacts: dict[str, list[Artifact]], component: dict[str, Any],
                   outputs_dir: Path, artifact_dir: Path) -> dict[str, Any]:
    """The ExecutorInput a task pod gets: resolved inputs, and where each output goes."""
    outputs: dict[str, Any] = {"parameters": {}, "artifacts": {},
                               "outputFile": str(outputs_dir / "executor_output.json")}
    declared = component.get("outputDefinitions", {})
    for name in declared.get("parameters", {}):
        outputs["parameters"][name] = {"outputFile": str(outputs_dir / "parameters" / name)}
    for name, definition in declared.get("artifacts", {}).items():
        kind = definition.get("artifactType", {})
        uri = str(artifact_dir / name)
        outputs["artifacts"][name] = {"artifacts": [{"name": name, "uri": uri, "metadata": {},
                                                     "type": {"schemaTitle": kind.get("schemaTitle", "system.Artifact"),
                                                              "schemaVersion": kind.get("schemaVersion", "0.0.1")}}]}
    return {"inputs": {"parameterValues": parameters,
                       "artifacts": {k: {"artifacts": [_as_local(a) for a in v]} for k, v in artifacts.items()}},
            "outputs": outputs}


def _as_local(artifact: Artifact) -> Artifact:
    """An input artifact as the task sees it: an imported one at its local path, as the KFP launcher
    downloads an importer's artifact before the task starts (kfp's ``Artifact.path`` keeps a file:// URI
    as it is, so the task gets the plain path)."""
    local = artifact.get(LOCAL_KEY)
    uri = str(artifact.get("uri", ""))
    if local is None and uri.startswith("file://"):  # a resumed run's record keeps the URI only
        local = unquote(urlsplit(uri).path)
    if local is None:
        return artifact
    return {**{k: v for k, v in artifact.items() if k != LOCAL_KEY}, "uri": str(local)}


def command_line(container: dict[str, Any], executor: dict[str, Any], placeholders: dict[str, str]) -> list[str]:
    """The container's command and args with every placeholder filled."""
    return [*expand(container.get("command", []), executor, placeholders),
            *expand(container.get("args", []), executor, placeholders)]


def expand(parts: list[Any], executor: dict[str, Any], placeholders: dict[str, str]) -> list[str]:
    """Command or args with placeholders filled (IfPresent/Concat expanded)."""
    return [x for part in parts for x in _expand(part, executor, placeholders)]


def _expand(part: Any, executor: dict[str, Any], placeholders: dict[str, str]) -> list[str]:
    if isinstance(part, str) and part.startswith("{") and ('"IfPresent"' in part or '"Concat"' in part):
        with contextlib.suppress(ValueError):
            part = json.loads(part)
    if isinstance(part, dict):
        if "Concat" in part:
            return ["".join(x for item in part["Concat"] for x in _expand(item, executor, placeholders))]
        if "IfPresent" in part:
            spec = part["IfPresent"]
            name = spec.get("InputName", "")
            inputs = executor["inputs"]
            present = name in inputs["parameterValues"] or name in inputs["artifacts"]
            branch = spec.get("Then" if present else "Else") or []
            branch = branch if isinstance(branch, list) else [branch]
            return [x for item in branch for x in _expand(item, executor, placeholders)]
        return [json.dumps(part)]
    return [_substitute(str(part), executor, placeholders)]


def _substitute(text: str, executor: dict[str, Any], placeholders: dict[str, str]) -> str:
    if "{{$" not in text:
        return text
    inputs, outputs = executor["inputs"], executor["outputs"]
    text = text.replace("{{$}}", json.dumps(executor))
    text = text.replace("{{$.outputs.output_file}}", outputs["outputFile"])
    for key, value in placeholders.items():
        text = text.replace(key, value)
    for name, value in inputs["parameterValues"].items():
        text = text.replace(f"{{{{$.inputs.parameters['{name}']}}}}", as_text(value))
    for name, spec in outputs["parameters"].items():
        text = text.replace(f"{{{{$.outputs.parameters['{name}'].output_file}}}}", spec["outputFile"])
    for name, group in inputs["artifacts"].items():
        first: dict[str, Any] = group["artifacts"][0] if group["artifacts"] else {"uri": "", "metadata": {}}
        text = text.replace(f"{{{{$.inputs.artifacts['{name}'].path}}}}", first["uri"])
        text = text.replace(f"{{{{$.inputs.artifacts['{name}'].uri}}}}", first["uri"])
        text = text.replace(f"{{{{$.inputs.artifacts['{name}'].metadata}}}}", json.dumps(first.get("metadata", {})))
        text = text.replace(f"{{{{$.inputs.artifacts['{name}']}}}}", json.dumps(group["artifacts"]))
    for name, group in outputs["artifacts"].items():
        first = group["artifacts"][0]
        text = text.replace(f"{{{{$.outputs.artifacts['{name}'].path}}}}", first["uri"])
        text = text.replace(f"{{{{$.outputs.artifacts['{name}'].uri}}}}", first["uri"])
    return text


def read_outputs(executor: dict[str, Any], component: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, list[Artifact]]]:
    """Outputs as kfp's executor wrote them: ``executor_output.json``, else one file per parameter."""
    outputs = executor["outputs"]
    written: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        written = json.loads(Path(outputs["outputFile"]).read_text())
    parameters: dict[str, Any] = {}
    declared = component.get("outputDefinitions", {}).get("parameters", {})
    for name, spec in outputs["parameters"].items():
        if name in written.get("parameterValues", {}):
            parameters[name] = written["parameterValues"][name]
            continue
        path = Path(spec["outputFile"])
        if path.exists():
            text = path.read_text()
            kind = declared.get(name, {}).get("parameterType", "STRING")
            parameters[name] = text if kind == "STRING" else _parse(text)
    artifacts: dict[str, list[Artifact]] = {}
    for name, group in outputs["artifacts"].items():
        produced = written.get("artifacts", {}).get(name, {}).get("artifacts")
        artifacts[name] = [{**a, "metadata": {**a.get("metadata", {})}} for a in (produced or group["artifacts"])]
        for art in artifacts[name]:
            art.setdefault("type", group["artifacts"][0]["type"])
    return parameters, artifacts


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class Launcher:
    """Starts task processes for one run: forked when possible, else a plain child process."""

    def __init__(self, forker: TaskForker | None, venvs: VenvCache) -> None:
        self.forker = forker
        self.venvs = venvs

    def run_plain(self, argv: list[str], env: dict[str, str], log_path: Path, workdir: Path,
                  timeout: float | None, stop: threading.Event, binds: dict[str, Path] | None = None
                  ) -> tuple[int, str | None]:
        """A command as it is (a container component's launch), in the task's folder."""
        with open(log_path, "ab") as log:
            try:
                process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env={**env, "TMPDIR": str(workdir)}, cwd=workdir,
                                           preexec_fn=_task_start(binds, workdir))
            except OSError as exc:
                log.write(f"[kfbox] could not start {argv[0]!r}: {exc}\n".encode())
                return 127, f"could not start {argv[0]!r}: {exc.strerror}"
            return _wait_process(process, timeout, stop)

    def run(self, command: list[str], env: dict[str, str], log_path: Path, workdir: Path,
            timeout: float | None, stop: threading.Event, binds: dict[str, Path] | None = None
            ) -> tuple[int, str | None]:
        """(exit code, why it was killed or None); ``binds``: mount path -> folder, in the task's namespace."""
        with open(log_path, "ab") as log:
            python = sys.executable
            reqs = Requirements.from_command(command)
            if reqs is not None and reqs.packages and not reqs.satisfied():
                try:
                    python = self.venvs.python_for(reqs, log, env)
                except VenvBuildError as exc:
                    log.write(f"[kfbox] {exc}\n".encode())
                    return 1, str(exc)
            elif reqs is not None and reqs.packages:
                log.write(f"[kfbox] {list(reqs.packages)} already installed; running without pip\n".encode())
            log.flush()
            # the compiled script runs "python3": here that is this interpreter (or the venv's, below)
            command = [part.replace("python3 -m kfp.dsl.executor_main", f"{sys.executable} -m kfp.dsl.executor_main")
                       for part in command]
            command = strip_prelude(command, python)
            if python == sys.executable and self.forker is not None:
                started = self.forker.start(command, env, log_path, reqs.packages if reqs else (), workdir,
                                            {k: str(v) for k, v in (binds or {}).items()})
                if started is not None:
                    return _wait_forked(started, timeout, stop)
            env = {**env, "TMPDIR": str(workdir)}  # the compiled script's mktemp -d lands in the task folder
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, cwd=workdir, preexec_fn=_task_start(binds, workdir))
            return _wait_process(process, timeout, stop)


def _task_start(binds: dict[str, Path] | None, workdir: Path) -> Callable[[], None]:
    """What a task's child process does before exec: die with its parent, enter its own mounts."""
    def start() -> None:
        die_with_parent()
        if binds:
            sandbox.enter(binds, workdir)
    return start


def _wait_process(process: subprocess.Popen[bytes], timeout: float | None, stop: threading.Event
                  ) -> tuple[int, str | None]:
    waited = 0.0
    while True:
        try:
            code = process.wait(0.2)
            return code, (f"killed by signal {signal.Signals(-code).name}" if code < 0 else None)
        except subprocess.TimeoutExpired:
            waited += 0.2
        if stop.is_set() or (timeout is not None and waited >= timeout):
            process.kill()
            process.wait()
            why = "cancelled" if stop.is_set() else f"exceeded its timeout of {timeout:g} s"
            return -signal.SIGKILL, f"{why}; killed with SIGKILL"


def _wait_forked(started: Any, timeout: float | None, stop: threading.Event) -> tuple[int, str | None]:
    pid, conn = started
    conn.settimeout(0.2)
    waited = 0.0
    killed: str | None = None
    data = b""
    while len(data) < 4:
        try:
            chunk = conn.recv(4 - len(data))
        except TimeoutError:
            waited += 0.2
            if killed is None and (stop.is_set() or (timeout is not None and waited >= timeout)):
                killed = ("cancelled" if stop.is_set() else f"exceeded its timeout of {timeout:g} s") + \
                    "; killed with SIGKILL"
                if pid > 0:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            continue
        if not chunk:
            break
        data += chunk
    conn.close()
    if len(data) == 4:
        return int.from_bytes(data, "big", signed=True), None
    return -signal.SIGKILL, killed or "the task process died without an exit code (killed by a signal)"
