"""Recurring runs through the upstream kfp.Client against a real server: a 1-second interval
schedule really starts runs that really run; enable/disable/delete and bad input as KFP answers."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import httpx
import kfp_server_api
import pytest
import yaml
from kfp import Client, compiler
from typer.testing import CliRunner, Result

from kfbox.cli import main
from kfbox.errors import InvalidInput, NotFound
from tests.pipelines.conftest import wait_run
from tests.pipelines.ticker_pipeline import gs_importing, ticker
from tests.support import ServerProcess, loopback


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("pkg") / "ticker.yaml"
    compiler.Compiler().compile(ticker, str(path))
    return str(path)


def run_ids(server: ServerProcess, recurring_run_id: str) -> list[str]:
    body = loopback().get(f"{server.url}/apis/v2beta1/recurringruns/{recurring_run_id}", timeout=10).json()
    return list(body["run_ids"])


def wait_for_runs(server: ServerProcess, recurring_run_id: str, count: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = run_ids(server, recurring_run_id)
        if len(ids) >= count:
            return ids
        time.sleep(0.2)
    raise AssertionError(f"schedule {recurring_run_id} started {run_ids(server, recurring_run_id)} in {timeout}s")


def test_interval_schedule_starts_runs_until_disabled(server: ServerProcess, kfp_client: Client,
                                                      package: str) -> None:
    experiment = kfp_client.create_experiment("scheduled")
    created = kfp_client.create_recurring_run(experiment.experiment_id, "every-second", interval_second=1,
                                              max_concurrency=2, no_catchup=True, params={"text": "tock"},
                                              pipeline_package_path=package)
    assert created.status == "ENABLED" and created.trigger.periodic_schedule.interval_second == "1"
    ids = wait_for_runs(server, created.recurring_run_id, 2)
    first = wait_run(server, ids[-1])  # the oldest
    assert first["state"] == "SUCCEEDED", first
    assert first["experiment_id"] == experiment.experiment_id
    assert first["runtime_config"]["parameters"] == {"text": "tock"}
    assert first["display_name"].startswith("every-second ")
    listed = kfp_client.list_runs(experiment_id=experiment.experiment_id, page_size=50).runs
    assert set(ids) <= {r.run_id for r in listed}

    kfp_client.disable_recurring_run(created.recurring_run_id)
    got = kfp_client.get_recurring_run(created.recurring_run_id)
    assert got.status == "DISABLED" and got.mode == "DISABLE"
    count = len(run_ids(server, created.recurring_run_id))
    time.sleep(2.5)  # more than two intervals: a disabled schedule must start nothing
    assert len(run_ids(server, created.recurring_run_id)) == count

    kfp_client.enable_recurring_run(created.recurring_run_id)
    wait_for_runs(server, created.recurring_run_id, count + 1)
    kfp_client.delete_recurring_run(created.recurring_run_id)
    with pytest.raises(kfp_server_api.ApiException) as exc:
        kfp_client.get_recurring_run(created.recurring_run_id)
    assert exc.value.status == 404
    for run_id in ids:  # runs outlive their schedule, as in KFP
        assert kfp_client.get_run(run_id).run_id == run_id


def test_cron_schedule_round_trip_and_listing(kfp_client: Client, package: str) -> None:
    experiment = kfp_client.create_experiment("cron")
    created = kfp_client.create_recurring_run(
        experiment.experiment_id, "weekday-mornings", cron_expression="0 0 9 ? * 1-5",
        start_time="2030-01-01T00:00:00Z", end_time="2030-12-31T00:00:00Z", pipeline_package_path=package,
        enabled=False, description="not yet")
    got = kfp_client.get_recurring_run(created.recurring_run_id)
    assert got.trigger.cron_schedule.cron == "0 0 9 ? * 1-5" and got.status == "DISABLED"
    assert got.trigger.cron_schedule.start_time.year == 2030 and got.no_catchup is True
    assert got.max_concurrency == "1" and got.description == "not yet"
    listed = kfp_client.list_recurring_runs(experiment_id=experiment.experiment_id)
    assert [r.display_name for r in listed.recurring_runs] == ["weekday-mornings"] and listed.total_size == 1
    kfp_client.enable_recurring_run(created.recurring_run_id)
    body = kfp_client.get_recurring_run(created.recurring_run_id)
    assert body.status == "ENABLED"
    kfp_client.delete_recurring_run(created.recurring_run_id)


def test_schedule_of_an_uploaded_pipeline_version(kfp_client: Client, package: str) -> None:
    pipeline = kfp_client.upload_pipeline(package, pipeline_name="scheduled-ticker")
    [version] = kfp_client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    created = kfp_client.create_recurring_run(
        kfp_client.create_experiment("versions-scheduled").experiment_id, "from-version", interval_second=3600,
        pipeline_id=pipeline.pipeline_id, version_id=version.pipeline_version_id, enabled=False)
    got = kfp_client.get_recurring_run(created.recurring_run_id)
    assert got.pipeline_version_reference.pipeline_version_id == version.pipeline_version_id
    assert got.pipeline_spec is None and got.trigger.periodic_schedule.interval_second == "3600"
    kfp_client.delete_recurring_run(created.recurring_run_id)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cron_expression": "*/5 * * * *"}, "six, seconds first"),
    ({"interval_second": 60, "max_concurrency": 11}, "at least 1 and at most 10"),
    ({"interval_second": 60, "params": {"nope": 1}}, "has no parameter 'nope'"),
])
def test_bad_recurring_runs_are_400_with_the_reason(kfp_client: Client, package: str, kwargs: dict[str, object],
                                                    message: str) -> None:
    experiment = kfp_client.create_experiment("bad-schedules")
    with pytest.raises(kfp_server_api.ApiException) as exc:
        kfp_client.create_recurring_run(experiment.experiment_id, "bad", pipeline_package_path=package,
                                        **kwargs)  # type: ignore[arg-type]
    assert exc.value.status == 400 and message in str(exc.value.body)


def test_a_schedule_is_refused_at_create_for_what_a_run_submit_refuses(server: ServerProcess, tmp_path: Path,
                                                                       package: str) -> None:
    """A gs:// importer and an IR field the engine does not know: 400 at create naming them, as POST /runs
    answers, and nothing stored -- not a schedule whose every run fails."""
    compiler.Compiler().compile(gs_importing, str(tmp_path / "gs.yaml"))
    gs = yaml.safe_load((tmp_path / "gs.yaml").read_text())
    future = yaml.safe_load(Path(package).read_text())
    future["root"]["dag"]["tasks"]["echo"]["someFutureField"] = {"x": 1}
    trigger = {"periodic_schedule": {"interval_second": 60}}
    answers = [httpx.post(f"{server.url}/apis/v2beta1/recurringruns", timeout=30,
                          json={"display_name": "refused", "pipeline_spec": spec, "trigger": trigger, "mode": "ENABLE"})
               for spec in (gs, future)]
    assert [a.status_code for a in answers] == [400, 400], [a.text for a in answers]
    gs_message, future_message = (a.json()["message"] for a in answers)
    assert "gs://bucket/notes.txt" in gs_message and "gs:// needs Google Cloud credentials" in gs_message
    assert "executor 'exec-importer'" in gs_message
    assert "task 'echo': IR field 'someFutureField' is not supported" in future_message
    listed = httpx.get(f"{server.url}/apis/v2beta1/recurringruns", timeout=30).json().get("recurringRuns") or []
    assert not [r for r in listed if r["display_name"] == "refused"]


def test_unknown_recurring_run_is_404_in_kfp_shape(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/pipeline/apis/v2beta1/recurringruns/nope:enable", timeout=10)
    assert response.status_code == 404
    assert response.json()["code"] == 5 and "nope" in response.json()["message"]


def test_cli_create_list_get_enable_disable_delete(server: ServerProcess, package: str) -> None:
    runner = CliRunner()  # in-process: the same command objects, without an interpreter start per call

    def kfbox(*args: str) -> Result:
        return runner.invoke(main.app, ["schedules", *args, "--url", server.url], env={"COLUMNS": "200"})

    made = kfbox("create", package, "--every", "1h30m", "--name", "cli-hourly", "-p", "text=hi", "--disabled",
                 "-o", "json")
    assert made.exit_code == 0, made.output
    body = json.loads(made.output)
    sid = body["recurring_run_id"]
    assert body["trigger"]["periodic_schedule"]["interval_second"] == "5400" and body["status"] == "DISABLED"
    assert body["runtime_config"]["parameters"] == {"text": "hi"} and body["no_catchup"] is True
    assert "cli-hourly" in kfbox("list").output
    assert kfbox("enable", sid).exit_code == 0
    shown = kfbox("get", sid).output
    assert "ENABLED" in shown and "every 5400s" in shown
    assert kfbox("disable", sid).exit_code == 0
    assert kfbox("delete", sid).exit_code == 0
    gone = kfbox("get", sid)
    assert isinstance(gone.exception, NotFound) and "does not exist" in str(gone.exception)
    bad = kfbox("create", package, "--cron", "*/5 * * * *")
    assert isinstance(bad.exception, InvalidInput) and "seconds first" in str(bad.exception)
    both = kfbox("create", package, "--every", "5m", "--cron", "0 * * * * *")
    assert isinstance(both.exception, InvalidInput) and "exactly one trigger" in str(both.exception)


def run_ticks(server: ServerProcess, recurring_run_id: str) -> list[datetime.datetime]:
    """When each run of the schedule was due (its name ends with the tick, as KFP's carry an index)."""
    names = [httpx.get(f"{server.url}/apis/v2beta1/runs/{r}", timeout=10).json()["display_name"]
             for r in run_ids(server, recurring_run_id)]
    return [datetime.datetime.fromisoformat(n.rsplit(" ", 1)[1].replace("Z", "+00:00")) for n in names]


def test_ticks_missed_while_the_server_is_down_are_not_back_filled(tmp_path: Path, package: str) -> None:
    home = tmp_path / "home"
    first = ServerProcess.start(home)
    try:
        client = Client(host=f"{first.url}/pipeline")
        created = client.create_recurring_run(client.create_experiment("restart").experiment_id, "restart-every-1s",
                                              interval_second=1, max_concurrency=10, pipeline_package_path=package)
        sid = created.recurring_run_id
        wait_for_runs(first, sid, 1)
    finally:
        first.stop()
    stopped_at = datetime.datetime.now(datetime.UTC)
    time.sleep(3)  # three ticks go by with no server
    restarting_at = datetime.datetime.now(datetime.UTC)
    second = ServerProcess.start(home)
    try:
        deadline = time.monotonic() + 30
        while not any(t >= restarting_at for t in run_ticks(second, sid)):
            assert time.monotonic() < deadline, "the schedule started nothing after the restart"
            time.sleep(0.2)
        ticks = run_ticks(second, sid)
        # catch-up would start a run for each of the three ticks missed while down; without it they
        # collapse into one run for the latest tick before the scheduler woke (at most a second old)
        missed = [t for t in ticks if stopped_at < t < restarting_at]
        assert len(missed) <= 1, (ticks, stopped_at, restarting_at)
        assert all(t > restarting_at - datetime.timedelta(seconds=1) for t in missed), (missed, restarting_at)
        assert Client(host=f"{second.url}/pipeline").get_recurring_run(sid).status == "ENABLED"
    finally:
        second.stop()
