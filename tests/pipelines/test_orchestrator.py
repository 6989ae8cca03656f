"""kfbox's IR orchestrator, driven in-process: compiled pipelines through ``Engine`` with real task processes.

Each test compiles a small pipeline with kfp, runs it with the worker's engine (tasks are real
processes running kfp's ``executor_main``) and asserts on the recorded events -- what the
server turns into ``run_details``. The upstream semantics named are those of the KFP backend
(``backend/src/v2``). A server test at the end checks what the API refuses at submit.
"""

# no `from __future__ import annotations`: kfp reads the components' annotations as types

import json
import os
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional

import httpx
import pytest
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Output

from kfbox.pipelines.events import EventWriter
from kfbox.pipelines.orchestrator.dag import Engine
from tests.support import ServerProcess

IMAGE = "python:3.11"


def run(pipeline: Any, tmp_path: Path, arguments: dict[str, Any] | None = None, **job: Any
        ) -> tuple[str, str | None, dict[str, dict[str, Any]]]:
    """(state, error, tasks by path) of one in-process run; tasks carry their finished event's fields."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    package = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(package))
    import yaml

    docs = [d for d in yaml.safe_load_all(package.read_text()) if d]
    spec = docs[0] if len(docs) == 1 else {"pipeline_spec": docs[0], "platform_spec": docs[1]}
    root = tmp_path / "run"
    (root / "tasks").mkdir(parents=True)
    settings = {"run_id": "5e1f0c2a-0000-4000-8000-000000000001", "pipeline_spec": spec,
                "parameters": arguments or {}, "artifacts_root": str(root / "artifacts"),
                "cache_root": str(root / "cache"), "pvc_root": str(root / "pvc"), "venvs_dir": str(root / "venvs"),
                "fork_tasks": True, "logs_dir": str(root / "tasks"), "display_name": "test run 1",
                "created_at": "2026-12-01T00:00:00Z", **job}
    state, error = Engine(settings, EventWriter(root / "events.jsonl")).run()
    tasks: dict[str, dict[str, Any]] = {}
    by_id: dict[str, dict[str, Any]] = {}
    for line in (root / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "task_started":
            by_id[event["task_id"]] = tasks[event["path"]] = dict(event)
        elif event["event"] == "task_finished":
            by_id[event["task_id"]].update(event, finished_ms=event["ms"])
    return state, error, tasks


def log(task: dict[str, Any]) -> str:
    return Path(task["log"]).read_text()


@dsl.component(base_image=IMAGE)
def sleepy(seconds: float) -> float:
    import time

    start = time.time()
    time.sleep(seconds)
    return start


@dsl.component(base_image=IMAGE)
def echo(text: str) -> str:
    print(text)
    return text


@dsl.component(base_image=IMAGE)
def numbers(n: int) -> list:
    return [{"name": f"n{i}", "values": list(range(i + 1))} for i in range(n)]


@dsl.component(base_image=IMAGE)
def double(x: int) -> int:
    return 2 * x


@dsl.component(base_image=IMAGE)
def total(values: list) -> int:
    assert all(isinstance(v, int) for v in values), values  # collected ints stay ints
    return sum(values)


@dsl.component(base_image=IMAGE)
def nested_total(values: list) -> int:
    return sum(sum(inner) for inner in values)


def test_independent_tasks_run_at_once_and_after_waits(tmp_path: Path) -> None:
    @dsl.pipeline(name="parallel")
    def parallel() -> None:
        a = sleepy(seconds=1.0).set_caching_options(False)
        b = sleepy(seconds=1.0).set_caching_options(False)
        sleepy(seconds=0.0).after(a, b).set_caching_options(False)

    state, error, tasks = run(parallel, tmp_path, task_concurrency=4)
    assert state == "SUCCEEDED", error
    first, second, last = (tasks[p]["parameters"]["Output"] for p in ("sleepy", "sleepy-2", "sleepy-3"))
    assert abs(first - second) < 0.9  # started together, not one after the other
    assert last >= max(first, second) + 1.0  # .after(): only once both had finished


def test_loops_over_a_field_of_the_outer_item_and_collect_nested(tmp_path: Path) -> None:
    @dsl.pipeline(name="nested-loops")
    def nested_loops(n: int = 3) -> None:
        rows = numbers(n=n).set_caching_options(False)
        with dsl.ParallelFor(rows.output, parallelism=2) as row:
            with dsl.ParallelFor(row.values) as value:
                doubled = double(x=value).set_caching_options(False)
            total(values=dsl.Collected(doubled.output)).set_caching_options(False)
        nested_total(values=dsl.Collected(doubled.output)).set_caching_options(False)

    state, error, tasks = run(nested_loops, tmp_path)
    assert state == "SUCCEEDED", error
    sums = sorted(t["parameters"]["Output"] for p, t in tasks.items() if p.endswith("/total"))
    assert sums == [0, 2, 6]  # 2*(0), 2*(0+1), 2*(0+1+2)
    assert tasks["nested-total"]["parameters"]["Output"] == 8
    iterations = [p for p in tasks if p.startswith("for-loop-1/for-loop-1-iteration-") and p.count("/") == 1]
    assert len(iterations) == 3 and all(tasks[p]["parent_id"] == tasks["for-loop-1"]["task_id"] for p in iterations)


@dsl.component(base_image=IMAGE)
def coin(side: str) -> str:
    return side


@dsl.component(base_image=IMAGE)
def make(text: str, out: Output[Dataset]) -> None:
    with open(out.path, "w") as f:
        f.write(text)


@dsl.component(base_image=IMAGE)
def read(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


@dsl.pipeline(name="branch")
def branch(side: str) -> Dataset:
    flipped = coin(side=side).set_caching_options(False)
    with dsl.If(flipped.output == "heads"):
        heads = make(text="from heads").set_caching_options(False)
    with dsl.Elif(flipped.output == "tails"):
        tails = make(text="from tails").set_caching_options(False)
    with dsl.Else():
        edge = make(text="on its edge").set_caching_options(False)
    return dsl.OneOf(heads.outputs["out"], tails.outputs["out"], edge.outputs["out"])


def test_if_elif_else_with_oneof_artifact_through_a_sub_pipeline(tmp_path: Path) -> None:
    @dsl.pipeline(name="outer")
    def outer() -> None:
        for side in ("tails", "edge"):
            read(data=branch(side=side).output).set_caching_options(False)

    state, error, tasks = run(outer, tmp_path)
    assert state == "SUCCEEDED", error
    assert sorted(t["parameters"]["Output"] for p, t in tasks.items() if p.startswith("read")) == [
        "from tails", "on its edge"]
    skipped = sorted(p for p, t in tasks.items() if t["state"] == "SKIPPED")
    assert len(skipped) == 4 and all("condition-" in p for p in skipped)  # two branches not taken, per sub-DAG


@dsl.component(base_image=IMAGE)
def fail(message: str) -> str:
    raise RuntimeError(message)


@dsl.component(base_image=IMAGE)
def report(status: dsl.PipelineTaskFinalStatus) -> str:
    import json

    return json.dumps({"state": status.state, "resource": status.pipeline_job_resource_name,
                       "task": status.pipeline_task_name, "code": status.error_code,
                       "message": status.error_message})


@dsl.component(base_image=IMAGE)
def maybe(text: str = "default") -> str:
    return text


def test_exit_handlers_see_the_final_status_and_ignore_upstream_failure_runs(tmp_path: Path) -> None:
    @dsl.pipeline(name="exits")
    def exits() -> None:
        first = report().set_caching_options(False)
        with dsl.ExitHandler(first):
            broken = fail(message="kaput").set_caching_options(False)
            maybe(text=broken.output).ignore_upstream_failure().set_caching_options(False)
        second = report().set_caching_options(False)
        with dsl.ExitHandler(second):
            echo(text="fine").set_caching_options(False)

    state, error, tasks = run(exits, tmp_path)
    assert state == "FAILED" and "RuntimeError: kaput" in (error or "")
    failed = json.loads(tasks["report"]["parameters"]["Output"])
    assert failed["state"] == "FAILED" and failed["task"] == "exit-handler-1"
    assert failed["resource"].startswith("exits-") and "kaput" in failed["message"]
    assert json.loads(tasks["report-2"]["parameters"]["Output"])["state"] == "COMPLETE"
    assert tasks["exit-handler-1/maybe"]["parameters"]["Output"] == "default"  # ran, its input left unset
    assert tasks["exit-handler-1/fail"]["error"].startswith("Task 'exit-handler-1/fail' failed: RuntimeError: kaput")


def test_final_status_error_code_is_the_google_rpc_code_of_the_cause(tmp_path: Path) -> None:
    """``error_code`` is "the google.rpc.Code in case of error" (kfp's PipelineTaskFinalStatus): UNKNOWN (2) for
    a component that raised, DEADLINE_EXCEEDED (4) for one killed at its timeout, None when all succeeded."""
    from kfp import kubernetes

    @dsl.pipeline(name="codes")
    def codes() -> None:
        raised, late, fine = report().set_caching_options(False), report().set_caching_options(False), \
            report().set_caching_options(False)
        with dsl.ExitHandler(raised):
            fail(message="kaput").set_caching_options(False)
        with dsl.ExitHandler(late):
            kubernetes.set_timeout(sleepy(seconds=60.0).set_caching_options(False), 1)
        with dsl.ExitHandler(fine):
            echo(text="fine").set_caching_options(False)

    state, _, tasks = run(codes, tmp_path)
    assert state == "FAILED"
    statuses = {json.loads(t["parameters"]["Output"])["task"]: json.loads(t["parameters"]["Output"])
                for p, t in tasks.items() if p.startswith("report")}
    assert statuses["exit-handler-1"]["code"] == 2 and "RuntimeError: kaput" in statuses["exit-handler-1"]["message"]
    assert statuses["exit-handler-2"]["code"] == 4 and "exceeded its timeout of 1 s" in statuses["exit-handler-2"][
        "message"]
    assert statuses["exit-handler-3"] == {"state": "COMPLETE", "resource": statuses["exit-handler-3"]["resource"],
                                          "task": "exit-handler-3", "code": None, "message": None}


def test_a_forked_task_has_what_a_task_pod_has_not_kfp_client(tmp_path: Path) -> None:
    """A task pod runs executor_main with ``_KFP_RUNTIME=true``: kfp then imports its runtime, not kfp.client
    and the kubernetes client. A task forked from the task server starts from that same state (it used to
    inherit the server's full kfp import: 2.4 s of CPU at its start and 80 MB copied into every fork)."""
    @dsl.component(base_image=IMAGE)
    def imported() -> str:
        import os
        import sys

        return f"{os.environ.get('_KFP_RUNTIME')} {'kfp.client' in sys.modules} {'kubernetes' in sys.modules}"

    @dsl.pipeline(name="pod-like")
    def pod_like() -> None:
        imported().set_caching_options(False)

    state, error, tasks = run(pod_like, tmp_path)
    assert state == "SUCCEEDED", error
    assert tasks["imported"]["parameters"]["Output"] == "true False False"


@dsl.component(base_image=IMAGE)
def flaky(attempt: str, succeed_on: str) -> str:
    if attempt != succeed_on:
        raise ValueError(f"attempt {attempt}")
    return attempt


def test_retry_with_backoff_substitutes_retries(tmp_path: Path) -> None:
    @dsl.pipeline(name="retry")
    def retry() -> None:
        flaky(attempt="{{retries}}", succeed_on="2").set_retry(
            num_retries=2, backoff_duration="1s", backoff_factor=1.5).set_caching_options(False)

    @dsl.pipeline(name="retried-dag")
    def retried_dag() -> None:
        flaky(attempt="{{retries}}", succeed_on="1").set_caching_options(False)

    @dsl.pipeline(name="retry")
    def with_dag() -> None:
        retried_dag().set_retry(num_retries=1)  # a sub-DAG's attempt is what {{retries}} counts inside it

    state, error, tasks = run(with_dag, tmp_path / "dag")
    assert state == "SUCCEEDED", error
    assert tasks["retried-dag/flaky"]["state"] == "SUCCEEDED"  # its second run, in the DAG's second attempt
    started = time.monotonic()
    state, error, tasks = run(retry, tmp_path)
    assert state == "SUCCEEDED", error
    assert tasks["flaky"]["parameters"]["Output"] == "2" and tasks["flaky"]["detail"]["attempts"] == 3
    assert time.monotonic() - started >= 2.5  # 1 s then 1.5 s of backoff
    assert log(tasks["flaky"]).count("retrying in") == 2


@dsl.component(base_image=IMAGE)
def placeholders(job_name: str, resource: str, job_id: str, task_name: str, task_id: str, root: str,
                 created: str, optional: Optional[str] = None) -> str:  # noqa: UP045 - kfp reads the annotation
    import json
    import os

    env = {k: v for k, v in os.environ.items() if k.startswith("PIPELINE_")}
    return json.dumps([job_name, resource, job_id, task_name, task_id, root, created, optional, env])


def test_placeholders_and_task_environment(tmp_path: Path) -> None:
    @dsl.pipeline(name="placeholders")
    def with_placeholders() -> None:
        placeholders(job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, resource=dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER,
                     job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, task_name=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
                     task_id=dsl.PIPELINE_TASK_ID_PLACEHOLDER, root=dsl.PIPELINE_ROOT_PLACEHOLDER,
                     created=dsl.PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER).set_caching_options(False)

    state, error, tasks = run(with_placeholders, tmp_path)
    assert state == "SUCCEEDED", error
    task = tasks["placeholders"]
    name, resource, job_id, task_name, task_id, root, created, optional, env = json.loads(task["parameters"]["Output"])
    assert (name, job_id, task_name, task_id) == ("test run 1", "5e1f0c2a-0000-4000-8000-000000000001",
                                                 "placeholders", task["task_id"])
    assert resource.startswith("placeholders-") and root == str(tmp_path / "run" / "artifacts")
    assert created == "2026-12-01T00:00:00Z" and optional is None
    assert env["PIPELINE_JOB_ID"] == job_id and env["PIPELINE_TASK_NAME"] == "placeholders"


class Pair(NamedTuple):
    text: str
    data: Dataset


@dsl.pipeline(name="inner")
def inner(text: str) -> Pair:
    made = make(text=text).set_caching_options(False)
    said = echo(text=text).set_caching_options(False)
    return Pair(text=said.output, data=made.outputs["out"])


def test_sub_pipeline_parameter_and_artifact_outputs_with_task_files_in_the_run(tmp_path: Path) -> None:
    @dsl.pipeline(name="outer")
    def outer() -> None:
        pair = inner(text="hello")
        read(data=pair.outputs["data"]).set_caching_options(False)
        echo(text=pair.outputs["text"]).set_caching_options(False)

    state, error, tasks = run(outer, tmp_path, fork_tasks=False)  # plain processes: the compiled script itself
    assert state == "SUCCEEDED", error
    assert tasks["read"]["parameters"]["Output"] == "hello" and tasks["echo"]["parameters"]["Output"] == "hello"
    assert tasks["inner/make"]["parent_id"] == tasks["inner"]["task_id"]
    # the script's mktemp -d lands in the task's folder, which goes with the run (issue 8, item 4)
    assert len(list((tmp_path / "run" / "tasks").rglob("ephemeral_component.py"))) == 4


def test_names_that_become_paths_stay_inside_the_home(tmp_path: Path) -> None:
    """A hand-edited IR whose component, task and output names climb out (issue 8, item 3)."""
    @dsl.pipeline(name="escape")
    def escape() -> None:
        make(text="x").set_caching_options(False)

    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(escape, str(package))
    text = package.read_text().replace("comp-make", "comp-../../x").replace("exec-make", "exec-../../y")
    text = text.replace("  make:\n", "  ../../../../escaped:\n").replace("name: make", "name: ../../../../escaped")
    package.write_text(text)
    before = set(tmp_path.parent.iterdir())
    state, error, _ = _run_yaml(package, tmp_path)
    assert state == "SUCCEEDED", error
    assert set(tmp_path.parent.iterdir()) == before
    written = [p for p in (tmp_path / "run").rglob("out") if p.is_file()]
    assert len(written) == 1 and written[0].is_relative_to(tmp_path / "run" / "artifacts")


def _run_yaml(package: Path, tmp_path: Path) -> tuple[str, str | None, dict[str, dict[str, Any]]]:
    import yaml

    spec = yaml.safe_load(package.read_text())
    root = tmp_path / "run"
    (root / "tasks").mkdir(parents=True)
    job = {"run_id": "5e1f0c2a-0000-4000-8000-000000000002", "pipeline_spec": spec, "parameters": {},
           "artifacts_root": str(root / "artifacts"), "cache_root": str(root / "cache"),
           "pvc_root": str(root / "pvc"), "venvs_dir": str(root / "venvs"), "fork_tasks": True,
           "logs_dir": str(root / "tasks")}
    state, error = Engine(job, EventWriter(root / "events.jsonl")).run()
    return state, error, {}


def test_ignored_resource_requests_are_said(tmp_path: Path) -> None:
    @dsl.pipeline(name="resources")
    def resources() -> None:
        echo(text="x").set_cpu_limit("2").set_memory_limit("1G").set_accelerator_type("nvidia.com/gpu") \
            .set_accelerator_limit(1).set_caching_options(False)

    state, error, tasks = run(resources, tmp_path)
    assert state == "SUCCEEDED", error
    warnings = tasks["echo"]["detail"]["warnings"]
    assert any("cpuLimit" in w for w in warnings) and any("accelerator" in w for w in warnings)
    assert "[kfbox] resource setting" in log(tasks["echo"])


def test_engine_refuses_what_it_cannot_run_at_submit(tmp_path: Path) -> None:
    @dsl.pipeline(name="refused")
    def refused() -> None:
        echo(text="x")

    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(refused, str(package))
    import yaml

    spec = yaml.safe_load(package.read_text())
    spec["root"]["dag"]["tasks"]["echo"]["someFutureField"] = {"x": 1}
    spec["components"]["comp-echo"]["executorLabel"] = "exec-missing"
    server = ServerProcess.start(tmp_path / "home")
    try:
        response = httpx.post(f"{server.url}/apis/v2beta1/runs", timeout=30,
                              json={"display_name": "r", "pipeline_spec": spec})
    finally:
        server.stop()
    assert response.status_code == 400
    message = response.json()["message"]
    assert "task 'echo': IR field 'someFutureField' is not supported" in message
    assert "executor 'exec-missing', which the spec does not define" in message


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the task server forks")
def test_a_killed_task_fails_with_the_signal(tmp_path: Path) -> None:
    @dsl.component(base_image=IMAGE)
    def suicide() -> None:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    @dsl.pipeline(name="killed")
    def killed() -> None:
        suicide().set_caching_options(False)

    state, error, _ = run(killed, tmp_path)
    assert state == "FAILED" and "killed by a signal" in (error or "")


@dsl.container_component
def shout(text: str, out: dsl.OutputPath(str)):  # type: ignore[valid-type]
    return dsl.ContainerSpec(image="alpine:3", command=["sh", "-c", 'echo "$0!" | tr a-z A-Z > "$1"'],
                             args=[text, out])


def test_container_component_runs_on_the_host_when_told(tmp_path: Path) -> None:
    """No Docker here: KFBOX_CONTAINER_RUNTIME=host runs the command itself, saying the image was not used."""
    @dsl.pipeline(name="containers")
    def with_container() -> None:
        said = shout(text="hi").set_caching_options(False)
        echo(text=said.output).set_caching_options(False)

    state, error, tasks = run(with_container, tmp_path, container_runtime="host")
    assert state == "SUCCEEDED", error
    assert tasks["echo"]["parameters"]["Output"] == "HI!\n"
    assert "image 'alpine:3' was not used" in log(tasks["shout"])


def test_a_task_that_cannot_start_has_error_code_failed_precondition(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A container component with KFBOX_CONTAINER_RUNTIME=docker and no docker on PATH cannot start: the exit
    handler guarding it sees google.rpc FAILED_PRECONDITION (9) and the reason."""
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setenv("PATH", f"{bare}:/usr/bin:/bin")
    if any((Path(p) / "docker").exists() for p in ("/usr/bin", "/bin")):
        pytest.skip("a real docker is installed in /usr/bin or /bin; this test needs a PATH without one")

    @dsl.pipeline(name="cannot-start")
    def cannot_start() -> None:
        status = report().set_caching_options(False)
        with dsl.ExitHandler(status):
            shout(text="hi").set_caching_options(False)

    state, _, tasks = run(cannot_start, tmp_path / "run", container_runtime="docker")
    assert state == "FAILED" and tasks["exit-handler-1/shout"]["code"] == 9
    final = json.loads(tasks["report"]["parameters"]["Output"])
    assert final["code"] == 9 and "no docker command is on PATH" in final["message"], final


def test_field_paths_give_pod_name_and_the_task_pod_metadata() -> None:
    """``use_field_path_as_env`` as the downward API answers it: a label the pod lacks reads as ""."""
    from kfbox.pipelines.orchestrator.execute import field_path_env

    platform = {"podMetadata": {"labels": {"team": "ml"}, "annotations": {"note": "hi"}},
                "fieldPathAsEnv": [{"name": "POD", "fieldPath": "metadata.name"},
                                   {"name": "TEAM", "fieldPath": "metadata.labels['team']"},
                                   {"name": "NOTE", "fieldPath": "metadata.annotations['note']"},
                                   {"name": "NONE", "fieldPath": "metadata.labels['absent']"}]}
    assert field_path_env(platform, "p-123") == {"POD": "p-123", "TEAM": "ml", "NOTE": "hi", "NONE": ""}


def test_a_task_over_its_timeout_is_killed_and_fails(tmp_path: Path) -> None:
    from kfp import kubernetes

    @dsl.pipeline(name="slow")
    def slow() -> None:
        kubernetes.set_timeout(sleepy(seconds=60.0).set_caching_options(False), 1)

    started = time.monotonic()
    state, error, tasks = run(slow, tmp_path)
    assert state == "FAILED" and "exceeded its timeout of 1 s; killed with SIGKILL" in (error or "")
    assert time.monotonic() - started < 30 and tasks["sleepy"]["state"] == "FAILED"
