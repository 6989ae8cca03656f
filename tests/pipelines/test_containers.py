"""Container components: runtime detection, the command for a compiled dsl.container_component, and a
host-mode run that writes the outputs where kfp reads them.

This machine has no Docker or Podman engine, so detection is exercised with fake ``docker`` /
``podman`` executables on PATH (small shell scripts whose ``info`` succeeds or fails, as a
running or stopped daemon's would); the host-mode run is real.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler

from kfbox.config import Settings
from kfbox.errors import InvalidInput
from kfbox.pipelines.containers import (
    ContainerTask,
    Runtime,
    build_launch,
    detect_runtime,
    is_container_component,
    prepare_outputs,
    require_runtime,
    stop_command,
)
from tests.pipelines import ticker_pipeline
from tests.pipelines.conftest import process_gone
from tests.pipelines.ticker_pipeline import long_container, ticker

SECRET = "t0ps3cret"


def fake_engine(folder: Path, name: str, daemon_up: bool) -> Path:
    """A ``docker``-like CLI: ``info`` answers as a running (or stopped) daemon; ``run`` records its
    argv and the GREETING_TOKEN it was given through the environment."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(f"""#!/bin/sh
if [ "$1" = info ]; then
  {'echo "{}"; exit 0' if daemon_up else 'echo "Cannot connect to the Docker daemon" >&2; exit 1'}
fi
printf '%s\\n' "$@" > "$(dirname "$0")/argv.txt"
printf '%s' "$GREETING_TOKEN" > "$(dirname "$0")/env.txt"
""")
    script.chmod(0o755)
    return script


@pytest.fixture
def path_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds nothing but a folder for fakes (plus /bin for the scripts' sh)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    for engine in ("docker", "podman"):
        if any((Path(p) / engine).exists() for p in ("/usr/bin", "/bin")):
            pytest.skip(f"a real {engine} is installed in /usr/bin or /bin; these tests need a PATH without one")
    return folder


def test_auto_finds_nothing_without_an_engine(path_only: Path) -> None:
    assert detect_runtime("auto") is None
    with pytest.raises(InvalidInput) as exc:
        require_runtime("auto", image="alpine:3.20")
    message = exc.value.message
    assert "image 'alpine:3.20'" in message and "no docker or podman command is on PATH" in message
    assert "KFBOX_CONTAINER_RUNTIME=host" in message and "--containers host" in message


def test_an_installed_cli_whose_daemon_is_down_does_not_count(path_only: Path) -> None:
    fake_engine(path_only, "docker", daemon_up=False)
    assert detect_runtime("auto") is None
    with pytest.raises(InvalidInput, match=r"docker is installed but its engine does not answer \('docker info' fails"):
        require_runtime("docker")


def test_auto_prefers_a_docker_that_answers_then_podman(path_only: Path) -> None:
    podman = fake_engine(path_only, "podman", daemon_up=True)
    assert detect_runtime("auto") == Runtime("podman", str(podman))
    assert detect_runtime("docker") is None  # asked for docker, podman does not stand in
    docker = fake_engine(path_only, "docker", daemon_up=True)
    assert detect_runtime("auto") == Runtime("docker", str(docker))
    assert detect_runtime("host") == Runtime("host")


def test_the_setting_is_validated_where_it_is_read() -> None:
    with pytest.raises(InvalidInput, match="Container runtime 'kubernetes' is not one of"):
        Settings.load(container_runtime="kubernetes")
    assert Settings.load(container_runtime="host").container_runtime == "host"


@pytest.fixture
def compiled(tmp_path: Path) -> dict[str, Any]:
    package = tmp_path / "shell.yaml"
    compiler.Compiler().compile(ticker_pipeline.shell_greeting, str(package))
    spec: dict[str, Any] = yaml.safe_load(package.read_text())
    return spec


def resolved(spec: dict[str, Any], task_dir: Path) -> tuple[ContainerTask, dict[str, Any]]:
    """What the engine hands over: the executor's ContainerSpec with placeholders filled in."""
    container = spec["deploymentSpec"]["executors"]["exec-greet-in-shell"]["container"]
    greeting, report = task_dir / "outputs" / "parameters" / "greeting", task_dir / "artifacts" / "report"
    values = {"{{$.inputs.parameters['name']}}": "kfbox",
              "{{$.outputs.parameters['greeting'].output_file}}": str(greeting),
              "{{$.outputs.artifacts['report'].path}}": str(report)}
    executor_input = {"outputs": {"parameters": {"greeting": {"outputFile": str(greeting)}},
                                  "artifacts": {"report": {"artifacts": [{"uri": str(report)}]}},
                                  "outputFile": str(task_dir / "outputs" / "executor_output.json")}}
    task = ContainerTask(image=container["image"], command=[values.get(c, c) for c in container["command"]],
                         args=[values.get(a, a) for a in container["args"]],
                         env={e["name"]: e["value"] for e in container.get("env", [])}, binds=[task_dir],
                         volumes={"/mnt/db": task_dir / "secrets" / "db"}, name="kfbox-run1-task1")
    return task, executor_input


def test_container_components_are_told_from_python_components(compiled: dict[str, Any], tmp_path: Path) -> None:
    assert is_container_component(compiled["deploymentSpec"]["executors"]["exec-greet-in-shell"])
    package = tmp_path / "ticker.yaml"
    compiler.Compiler().compile(ticker, str(package))
    python = yaml.safe_load(package.read_text())["deploymentSpec"]["executors"]["exec-echo"]
    assert not is_container_component(python) and not is_container_component({"importer": {}})


def test_docker_command_for_a_compiled_container_component(compiled: dict[str, Any], tmp_path: Path,
                                                          path_only: Path) -> None:
    docker = fake_engine(path_only, "docker", daemon_up=True)
    task, _ = resolved(compiled, tmp_path / "task")
    launch = build_launch(require_runtime("auto"), task)
    argv = launch.argv
    assert argv[:4] == [str(docker), "run", "--rm", "--init"] and argv[argv.index("--name") + 1] == "kfbox-run1-task1"
    assert f"{tmp_path / 'task'}:{tmp_path / 'task'}:rw" in argv  # outputs at the same path inside
    assert f"{tmp_path / 'task' / 'secrets' / 'db'}:/mnt/db" in argv
    entry = argv.index("--entrypoint")
    assert argv[entry + 1:entry + 4] == ["sh", "alpine:3.20", "-c"]  # command replaces the entrypoint
    assert argv[entry + 5] == "kfbox" and argv[-1] == str(tmp_path / "task" / "artifacts" / "report")
    assert argv[argv.index("--env") + 1] == "GREETING_TOKEN" and SECRET not in " ".join(argv)
    assert launch.env == {"GREETING_TOKEN": SECRET} and launch.log_line is None
    # the value reaches the engine CLI through its environment
    subprocess.run(launch.argv, env={**os.environ, **launch.env}, check=True, timeout=30)
    assert (path_only / "env.txt").read_text() == SECRET
    assert (path_only / "argv.txt").read_text().splitlines()[0] == "run"
    assert stop_command(Runtime("docker", str(docker)), "kfbox-run1-task1") == [
        str(docker), "rm", "--force", "kfbox-run1-task1"]


def test_host_mode_runs_the_command_and_writes_the_outputs(compiled: dict[str, Any], tmp_path: Path) -> None:
    task, executor_input = resolved(compiled, tmp_path / "task")
    launch = build_launch(require_runtime("host"), task)
    assert launch.argv[:2] == ["sh", "-c"]
    assert launch.log_line is not None and "image 'alpine:3.20' was not used" in launch.log_line
    assert "KFBOX_CONTAINER_RUNTIME=host" in launch.log_line
    prepare_outputs(executor_input)  # the launcher makes output folders; the command does not
    done = subprocess.run(launch.argv, env={**os.environ, **launch.env}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "task" / "outputs" / "parameters" / "greeting").read_text() == "hello kfbox\n"
    assert (tmp_path / "task" / "artifacts" / "report").read_text() == "rows: 3\n"
    assert stop_command(Runtime("host"), "x") is None


def test_host_mode_needs_a_command(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no image entrypoint to fall back on"):
        build_launch(Runtime("host"), ContainerTask(image="busybox", command=[]))


def test_kfbox_up_refuses_an_unknown_runtime_before_starting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    done = subprocess.run([sys.executable, "-m", "kfbox", "up", "--containers", "kubernetes", "--port", "0",
                           "--home", str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and "Container runtime 'kubernetes' is not one of" in done.stderr
    assert not (tmp_path / "server.json").exists()


def engine_with_containers(folder: Path) -> Path:
    """A ``docker``-like CLI whose containers outlive ``docker run``, as real ones do (they are the engine's
    children, not the CLI's): ``run`` starts the "container" in its own session and waits for it; ``ps
    --filter label=KEY[=VALUE]`` lists the live ones with that label, ``inspect`` prints each one's id and run
    label; ``rm --force`` kills them. Each call is logged. A container's pid is in ``NAME.pid``: ``run`` empties
    it first, so a run reusing a removed container's name waits for its own container, never the old pid."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "docker"
    script.write_text("""#!/bin/sh
dir="$(dirname "$0")"
echo "$*" >> "$dir/calls.txt"
case "$1" in
  info) echo "{}"; exit 0 ;;
  run)
    name=""; label=""
    while [ $# -gt 0 ]; do
      case "$1" in --name) name="$2"; shift ;; --label) label="$2"; shift ;; esac
      shift
    done
    : > "$dir/$name.pid"  # a new container: not the removed one of that name (its pid may be reaped, or reused)
    setsid sh -c 'echo $$ > "$0"; exec sleep 300' "$dir/$name.pid" </dev/null >/dev/null 2>&1 &
    echo "$label" > "$dir/$name.label"
    while [ ! -s "$dir/$name.pid" ]; do sleep 0.05; done
    while kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null; do sleep 0.1; done
    exit 137 ;;
  ps)
    for pid in "$dir"/*.pid; do
      [ -s "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null || continue
      name="$(basename "$pid" .pid)"
      label="$(cat "$dir/$name.label")"
      { [ "label=$label" = "$5" ] || [ "label=${label%%=*}" = "$5" ]; } && echo "$name"
    done
    exit 0 ;;
  inspect)
    shift 3
    for name in "$@"; do label="$(cat "$dir/$name.label")"; echo "$name ${label#*=}"; done ;;
  rm)
    shift 2
    for name in "$@"; do kill "$(cat "$dir/$name.pid")"; done ;;
esac
""")
    script.chmod(0o755)
    return script


def test_cancelling_a_run_stops_its_container(tmp_path: Path) -> None:
    """No Docker engine here: a fake ``docker`` CLI on the server's PATH (see engine_with_containers) stands in,
    whose container keeps running when ``docker run`` is killed -- what a real engine does. Terminating the run
    (kfp.Client's terminate_run) must remove the container, found by the run's label; the run ends CANCELED."""
    from tests.pipelines.conftest import wait_run
    from tests.support import ServerProcess

    folder = tmp_path / "bin"
    engine_with_containers(folder)
    package = tmp_path / "long.yaml"
    compiler.Compiler().compile(long_container, str(package))
    server = ServerProcess.start(tmp_path / "home", extra_env={"PATH": f"{folder}:{os.environ['PATH']}",
                                                               "KFBOX_CONTAINER_RUNTIME": "docker"})
    container_pid = None
    try:
        import httpx

        spec = yaml.safe_load(package.read_text())
        run_id = httpx.post(f"{server.url}/apis/v2beta1/runs", timeout=30,
                            json={"display_name": "long", "pipeline_spec": spec}).json()["run_id"]
        deadline = time.monotonic() + 60
        while not [p for p in folder.glob("*.pid") if p.read_text().strip()]:
            assert time.monotonic() < deadline, "the container never started"
            time.sleep(0.1)
        pid_file = next(folder.glob("*.pid"))
        container_pid = int(pid_file.read_text())
        assert (folder / f"{pid_file.stem}.label").read_text().strip() == f"kfbox.run={run_id}"
        assert httpx.post(f"{server.url}/apis/v2beta1/runs/{run_id}:terminate", timeout=30).status_code == 200
        assert wait_run(server, run_id)["state"] == "CANCELED"
        assert process_gone(container_pid, timeout=10), "the container still runs after the run was cancelled"
        calls = (folder / "calls.txt").read_text().splitlines()
        assert f"ps --all --quiet --filter label=kfbox.run={run_id}" in calls and f"rm --force {pid_file.stem}" in calls
    finally:
        server.stop()
        if container_pid is not None and not process_gone(container_pid, timeout=0):
            os.kill(container_pid, signal.SIGKILL)


def test_containers_left_by_a_killed_server_are_removed_at_its_next_start(tmp_path: Path) -> None:
    """``kill -9`` of the server: its worker dies with it, but the container keeps running (the fake engine's
    container, like a real one, is not the killed ``docker run``'s child). No Docker engine here, so the fake
    ``docker`` CLI of engine_with_containers stands in. The next start finds the container by its
    ``kfbox.run`` label and removes it before the run resumes; a container labelled with a run this home does
    not know (another kfbox on the same engine) is left alone."""
    from tests.pipelines.conftest import wait_run
    from tests.support import ServerProcess

    folder = tmp_path / "bin"
    engine_with_containers(folder)
    stranger = subprocess.Popen(["setsid", "sh", "-c", 'echo $$ > "$0"; exec sleep 300', str(folder / "other.pid")])
    (folder / "other.label").write_text("kfbox.run=0000-not-this-home\n")
    package = tmp_path / "long.yaml"
    compiler.Compiler().compile(long_container, str(package))
    env = {"PATH": f"{folder}:{os.environ['PATH']}", "KFBOX_CONTAINER_RUNTIME": "docker"}
    server = ServerProcess.start(tmp_path / "home", extra_env=env)
    pids: list[int] = []
    try:
        import httpx

        spec = yaml.safe_load(package.read_text())
        run_id = httpx.post(f"{server.url}/apis/v2beta1/runs", timeout=30,
                            json={"display_name": "long", "pipeline_spec": spec}).json()["run_id"]
        deadline = time.monotonic() + 60
        while not [p for p in folder.glob("kfbox-*.pid") if p.read_text().strip()]:
            assert time.monotonic() < deadline, "the container never started"
            time.sleep(0.1)
        pid_file = next(folder.glob("kfbox-*.pid"))
        leaked = int(pid_file.read_text())
        pids.append(leaked)
        server.kill()
        assert not process_gone(leaked, timeout=1), "the fake container should outlive the server, as a real one does"
        server = ServerProcess.start(tmp_path / "home", extra_env=env)
        assert process_gone(leaked, timeout=30), "the container a killed server left was not removed at the next start"
        calls = (folder / "calls.txt").read_text().splitlines()
        reaped = calls.index(f"rm --force {pid_file.stem}")
        assert "ps --all --quiet --filter label=kfbox.run" in calls[:reaped]
        assert not any(c.startswith("rm") and "other" in c for c in calls)  # not this home's: left alone
        assert not process_gone(stranger.pid, timeout=0)
        while pid_file.read_text().strip() in ("", str(leaked)):  # the run resumed: its task runs again
            assert time.monotonic() < deadline + 60, "the run did not resume"
            time.sleep(0.1)
        pids.append(int(pid_file.read_text()))
        assert httpx.post(f"{server.url}/apis/v2beta1/runs/{run_id}:terminate", timeout=30).status_code == 200
        assert wait_run(server, run_id)["state"] == "CANCELED"
    finally:
        server.stop()
        stranger.kill()
        stranger.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_start_on_a_home_without_runs_asks_no_engine(tmp_path: Path) -> None:
    """No run, no container of one to remove: the start leaves the engine alone (``docker info`` was a child
    process competing with the start). The fake ``docker`` CLI logs every call."""
    from tests.support import ServerProcess

    folder = tmp_path / "bin"
    engine_with_containers(folder)
    env = {"PATH": f"{folder}:{os.environ['PATH']}", "KFBOX_CONTAINER_RUNTIME": "docker"}
    server = ServerProcess.start(tmp_path / "home", extra_env=env)
    try:
        time.sleep(2)  # the run queue's thread looks for leftover containers first thing, right after the start
        assert server.healthy()
    finally:
        server.stop()
    assert not (folder / "calls.txt").exists(), (folder / "calls.txt").read_text()
