"""Runs survive the server: ``kill -9`` mid-run leaves no process behind, the next start resumes the run
from its finished tasks, and ``POST runs/{id}:retry`` re-runs only what did not succeed.

Real servers, real databases (SQLite, and PostgreSQL where its server is up), real task processes.
"""

# no `from __future__ import annotations`: kfp reads the components' annotations as types

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import pytest
from kfp import Client, compiler, dsl
from kfp.dsl import Dataset, Output

from kfbox.pipelines.spec import parse_package
from kfbox.pipelines.supervisor import reap_leftovers
from tests.pipelines.conftest import process_gone, task_pid, tasks_by_path, wait_run
from tests.support import ServerProcess, create_database, drop_database

IMAGE = "python:3.11"


@dsl.component(base_image=IMAGE)
def first(text: str) -> str:
    print(f"first ran with {text}")
    return text.upper()


@dsl.component(base_image=IMAGE)
def numbers(n: int) -> list:
    return list(range(n))


@dsl.component(base_image=IMAGE)
def square(x: int, flag: str, hold_from: int, table: Output[Dataset]) -> int:
    """Items from ``hold_from`` on wait for the flag: they are the ones running when the server is killed."""
    import os
    import time

    print(f"square ran with {x}; pid={os.getpid()}", flush=True)
    deadline = time.time() + 120
    while x >= hold_from and not os.path.exists(flag):
        assert time.time() < deadline, "the flag never appeared"
        time.sleep(0.1)
    with open(table.path, "w") as f:
        f.write(f"{x} squared is {x * x}")
    return x * x


@dsl.component(base_image=IMAGE)
def total(values: list) -> int:
    return int(sum(values))


ITEMS, HOLD_FROM = 18, 9  # 20 tasks: numbers, 18 squares (9 finish before the kill, 9 are running), total


@dsl.pipeline(name="twenty")
def twenty(flag: str) -> None:
    made = numbers(n=ITEMS).set_caching_options(False)
    with dsl.ParallelFor(made.output) as x:
        squared = square(x=x, flag=flag, hold_from=HOLD_FROM).set_caching_options(False)
    total(values=dsl.Collected(squared.outputs["Output"])).set_caching_options(False)


@dsl.component(base_image=IMAGE)
def picky(flag: str, previous: str) -> str:
    import os

    if not os.path.exists(flag):
        raise RuntimeError("no flag yet")
    return f"{previous} then picky"


@dsl.pipeline(name="picky")
def picky_pipeline(flag: str) -> None:
    made = first(text="made once").set_caching_options(False)
    checked = picky(flag=flag, previous=made.output).set_caching_options(False)
    first(text=checked.output).set_caching_options(False)


def spec_of(pipeline, tmp_path: Path) -> dict:  # type: ignore[no-untyped-def,type-arg]
    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(package))
    return parse_package(package.read_bytes())


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield None
        return
    name = f"kfbox_test_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    url = create_database("postgresql", name)
    yield url
    drop_database("postgresql", name)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def executors(body: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {path: t for path, t in tasks_by_path(body).items() if t["kind"] != "dag"}


def test_kill_9_mid_run_of_20_tasks_loses_no_finished_output_and_the_run_resumes(tmp_path: Path,
                                                                                  db_url: str | None) -> None:
    """kill -9 of the server while 9 of 18 loop tasks are still running: no process outlives it, and on the
    next start the run resumes -- every task that had finished keeps its id, outputs and artifact file and
    does not run again; the rest run and the run ends SUCCEEDED with the sum over all items."""
    flag = tmp_path / "flag"
    spec = spec_of(twenty, tmp_path)
    home = tmp_path / "home"
    env = {"KFBOX_TASK_CONCURRENCY": "20"}  # the held tasks must not hold the slots the others need
    server = ServerProcess.start(home, db=db_url, extra_env=env)
    try:
        created = httpx.post(f"{server.url}/apis/v2beta1/runs", timeout=30,
                             json={"display_name": "durable", "pipeline_spec": spec,
                                   "runtime_config": {"parameters": {"flag": str(flag)}}}).json()
        run_id = created["run_id"]
        deadline = time.monotonic() + 120
        while True:  # every item below HOLD_FROM finished, every other one running
            body = wait_run(server, run_id, states=("RUNNING",))
            squares = {p: t for p, t in executors(body).items() if t["display_name"] == "square"}
            done = {p: t for p, t in executors(body).items() if t["state"] == "SUCCEEDED"}
            if len(done) == HOLD_FROM + 1 and len(squares) == ITEMS:
                break
            assert time.monotonic() < deadline, sorted((p, t["state"]) for p, t in executors(body).items())
            time.sleep(0.2)
        held = next(p for p, t in squares.items() if t["state"] == "RUNNING")
        pid = task_pid(server, run_id, held)
        workers = children_of(server.process.pid)
        assert workers  # the run worker and the spare worker
    finally:
        server.kill()
    # every child dies with the server: worker, task server, the task itself (a parent-death signal each)
    assert process_gone(pid, timeout=30), "a task outlived kill -9 of the server"  # generous: shared CI cores
    assert all(process_gone(w, timeout=30) for w in workers), "a worker outlived kill -9 of the server"
    flag.write_text("open")
    server = ServerProcess.start(home, db=db_url, extra_env=env)
    try:
        body = wait_run(server, run_id, timeout=240)
        assert body["state"] == "SUCCEEDED", body["error"]
        after = executors(body)
        assert len(after) == ITEMS + 2  # one record per task, however often the run resumed
        assert after["total"]["parameters"] == {"Output": sum(x * x for x in range(ITEMS))}
        for path, before in done.items():
            task = after[path]
            assert (task["task_id"], task["parameters"]) == (before["task_id"], before["parameters"]), path
            log = httpx.get(f"{server.url}/apis/v2beta1/runs/{run_id}/tasks/{task['task_id']}/logs").text
            assert log.count(" ran with ") == (task["display_name"] == "square"), log  # ran once, not again
            for ids in task["outputs"].values():  # its artifact: recorded once, the file as the task wrote it
                artifact = httpx.get(f"{server.url}/apis/v2beta1/artifacts/{ids['artifact_ids'][0]}").json()
                x = task["input_parameters"]["x"]
                assert Path(artifact["uri"].removeprefix("file://")).read_text() == f"{x} squared is {x * x}"
        assert [h["state"] for h in body["state_history"]] == ["PENDING", "RUNNING", "PENDING", "RUNNING",
                                                               "SUCCEEDED"]
    finally:
        server.stop()


def test_retry_reruns_what_failed_and_reuses_what_succeeded(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    server = ServerProcess.start(tmp_path / "home")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            client = Client(host=f"{server.url}/pipeline")
        run_id = client.create_run_from_pipeline_func(picky_pipeline, arguments={"flag": str(flag)}).run_id
        failed = wait_run(server, run_id)
        assert failed["state"] == "FAILED" and "RuntimeError: no flag yet" in failed["error"]["message"]
        assert tasks_by_path(failed)["first-2"]["state"] == "SKIPPED"
        flag.write_text("here")
        client._run_api.run_service_retry_run(run_id)  # what kfp.Client's runs API calls for a retry
        body = wait_run(server, run_id, states=("SUCCEEDED", "FAILED", "CANCELED"))
        assert body["state"] == "SUCCEEDED", body["error"]
        before, after = tasks_by_path(failed), tasks_by_path(body)
        assert after["first"]["task_id"] == before["first"]["task_id"]
        assert after["first-2"]["parameters"] == {"Output": "MADE ONCE THEN PICKY"}
        log = httpx.get(f"{server.url}/apis/v2beta1/runs/{run_id}/tasks/first/logs").text
        assert log.count("first ran with") == 1
        again = httpx.post(f"{server.url}/apis/v2beta1/runs/{run_id}:retry")
        assert again.status_code == 409 and "only a FAILED or CANCELED run" in again.json()["message"]
    finally:
        server.stop()


def test_up_reaps_what_an_earlier_server_left(tmp_path: Path) -> None:
    """A worker left from before parent-death signals (or started by hand) in this home's runs folder."""
    runs = tmp_path / "home" / "runs" / "left"
    runs.mkdir(parents=True)
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "kfbox.pipelines.worker"],
                             cwd=runs, start_new_session=True)
    elsewhere = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "kfbox.pipelines.worker"],
                                 cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 10  # both exec'd: until then /proc shows the forked pytest's command line
        while not all(b"kfbox.pipelines.worker" in Path(f"/proc/{child.pid}/cmdline").read_bytes()
                      for child in (stray, elsewhere)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reap_leftovers(tmp_path / "home" / "runs") == [stray.pid]
        assert stray.wait(10) == -signal.SIGKILL
        assert elsewhere.poll() is None  # another home's worker is left alone
    finally:
        elsewhere.kill()
        stray.kill()
