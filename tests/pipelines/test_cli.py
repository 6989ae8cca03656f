"""``kfbox run``, ``kfbox compile`` and ``kfbox runs ...`` against a live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kfbox.cli import main
from kfbox.errors import InvalidInput
from tests.support import ServerProcess, run_cli

PIPELINE_FILE = '''
from kfp import dsl


@dsl.component(base_image="python:3.11")
def greet(name: str, times: int) -> str:
    print(f"hello {name} x{times}")
    return name * times


@dsl.pipeline(name="greeting")
def greeting(name: str = "kf", times: int = 2):
    greet(name=name, times=times)


@dsl.pipeline(name="other")
def other():
    greet(name="o", times=1)
'''


def kfbox(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (tests.support.run_cli): same entry, output and exit code, no fresh imports."""
    return run_cli(*args, env={"KFBOX_URL": server.url})


def kfbox_process(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    env["KFBOX_URL"] = server.url
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "kfbox", *args], capture_output=True, text=True, env=env,
                          timeout=180)


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server  # the package's server (tests/pipelines/conftest.py)


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "greeting.py"
    path.write_text(PIPELINE_FILE)
    return path


def run_count(server: ServerProcess) -> int:
    return int(server.client().get("/apis/v2beta1/runs").json()["total_size"])


BAD_INPUT = [
    (":greeting", ["-p", "colour=red"], "has no parameter 'colour'"),
    (":greeting", ["-p", "times=many"], "Parameter 'times' must be an integer; got 'many'"),
    (":greeting", ["-p", "times"], "Parameter 'times' is not name=value"),
    (":nope", [], "has no pipeline named 'nope'. Its pipelines: greeting, other"),
    ("", [], "defines 2 pipelines; pick one with"),
]


def test_bad_input_fails_before_anything_runs(server: ServerProcess, pipeline_file: Path) -> None:
    before = run_count(server)
    runner = CliRunner()
    for target, params, message in BAD_INPUT:  # in-process: the same command object, without kfp's import time
        result = runner.invoke(main.app, ["run", str(pipeline_file) + target, *params, "--url", server.url])
        assert isinstance(result.exception, InvalidInput), result.output
        assert message in str(result.exception)
    broken = pipeline_file.parent / "broken.py"
    broken.write_text("from kfp import dsl\ndef oops(:\n")
    done = kfbox_process(server, "run", str(broken))  # and once end to end: message on stderr, exit code 1
    assert done.returncode == 1
    assert f"Error: Pipeline file '{broken}' has a syntax error at line 2" in " ".join(done.stderr.split())
    assert run_count(server) == before


def test_run_watch_get_logs_list(server: ServerProcess, pipeline_file: Path) -> None:
    done = kfbox(server, "run", f"{pipeline_file}:greeting", "-p", "name=ab", "-p", "times=3", "--watch",
                 "--experiment", "cli", "-o", "json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout[done.stdout.index('{\n  "experiment_id"'):])
    assert body["state"] == "SUCCEEDED"
    run_id = body["run_id"]
    task = next(t for t in body["run_details"]["task_details"] if t["kind"] != "dag")  # the first row is the root DAG
    assert task["parameters"] == {"Output": "ababab"}

    shown = kfbox(server, "runs", "get", run_id)
    assert "SUCCEEDED" in shown.stdout and "Output=ababab" in shown.stdout
    logs = kfbox(server, "runs", "logs", run_id, "--task", "greet")
    assert "hello ab x3" in logs.stdout
    listed = kfbox(server, "runs", "list", "--experiment", "cli", "-o", "json")
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    missing = kfbox(server, "runs", "logs", run_id, "--task", "nope")
    assert missing.returncode == 1 and "has no task 'nope'" in missing.stderr


def test_compile_then_run_yaml_without_cache(server: ServerProcess, pipeline_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "greeting.yaml"
    done = kfbox(server, "compile", f"{pipeline_file}:greeting", "-o", str(output))
    assert done.returncode == 0, done.stderr
    assert "pipelineInfo" in output.read_text()
    first = kfbox(server, "run", str(output), "--watch", "-o", "json")
    assert first.returncode == 0, first.stderr
    again = kfbox(server, "run", str(output), "--watch", "--no-cache", "-o", "json")
    body = json.loads(again.stdout[again.stdout.index('{\n  "experiment_id"'):])
    assert body["state"] == "SUCCEEDED"
    assert body["run_details"]["task_details"][0]["cache_hit"] is False


def test_host_submits_through_the_gateway_paths(server: ServerProcess, pipeline_file: Path) -> None:
    """``--host`` is an ad-hoc cluster target (KFP under /pipeline, the profile namespace; see
    kfbox.cluster.target); kfbox's own KFP API stands in for the cluster."""
    done = kfbox(server, "run", f"{pipeline_file}:greeting", "-p", "name=remote", "--host", f"{server.url}/pipeline",
                 "--experiment", "remote", "--watch")
    assert done.returncode == 0, done.stderr
    assert "SUCCEEDED" in done.stdout
    runs = server.client().get("/apis/v2beta1/runs", params={"sort_by": "created_at desc", "page_size": 1}).json()
    assert runs["runs"][0]["runtime_config"]["parameters"] == {"name": "remote"}


FLAKY_FILE = '''
from kfp import dsl


@dsl.component(base_image="python:3.11")
def first() -> str:
    print("first ran")
    return "one"


@dsl.component(base_image="python:3.11")
def needs_flag(flag: str, given: str) -> str:
    import os

    if not os.path.exists(flag):
        raise RuntimeError(f"no flag at {flag}")
    return given + "+flag"


@dsl.pipeline(name="flaky")
def flaky(flag: str):
    made = first().set_caching_options(False)
    needs_flag(flag=flag, given=made.output).set_caching_options(False)
'''


def test_runs_retry_reruns_the_failed_task_and_reuses_the_rest(server: ServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "flaky.py"
    source.write_text(FLAKY_FILE)
    flag = tmp_path / "flag"
    done = kfbox(server, "run", f"{source}:flaky", "-p", f"flag={flag}", "--watch", "-o", "json")
    assert done.returncode != 0
    run_id = json.loads(done.stdout)["run_id"]
    flag.write_text("")
    retried = kfbox(server, "runs", "retry", run_id)
    assert retried.returncode == 0, retried.stderr
    assert f"Run {run_id}" in retried.stdout
    from tests.pipelines.conftest import tasks_by_path, wait_run

    body = wait_run(server, run_id)
    assert body["state"] == "SUCCEEDED", body["error"]
    tasks = tasks_by_path(body)
    assert tasks["needs-flag"]["parameters"]["Output"] == "one+flag"
    log = server.client().get(f"/apis/v2beta1/runs/{run_id}/tasks/first/logs").text
    assert log.count("first ran") == 1  # reused, not run again


def test_schedules_create_list_disable_enable_delete(server: ServerProcess, pipeline_file: Path) -> None:
    created = kfbox(server, "schedules", "create", f"{pipeline_file}:greeting", "--every", "1h", "--name", "hourly",
                    "-p", "times=1", "-o", "json")
    assert created.returncode == 0, created.stderr
    schedule_id = json.loads(created.stdout)["recurring_run_id"]
    listed = json.loads(kfbox(server, "schedules", "list", "-o", "json").stdout)
    assert [s["display_name"] for s in listed if s["recurring_run_id"] == schedule_id] == ["hourly"]
    assert kfbox(server, "schedules", "disable", schedule_id).returncode == 0
    assert json.loads(kfbox(server, "schedules", "get", schedule_id, "-o", "json").stdout)["status"] == "DISABLED"
    assert kfbox(server, "schedules", "enable", schedule_id).returncode == 0
    assert json.loads(kfbox(server, "schedules", "get", schedule_id, "-o", "json").stdout)["status"] == "ENABLED"
    assert kfbox(server, "schedules", "delete", schedule_id).returncode == 0
    missing = kfbox(server, "schedules", "get", schedule_id)
    assert missing.returncode != 0 and schedule_id in missing.stderr + missing.stdout
