"""A server that dies mid-run: at the next start the run is FAILED with the reason, and runs work again."""

from __future__ import annotations

from pathlib import Path

import httpx
from kfp import compiler

from tests.pipelines import sample_pipelines as samples
from tests.pipelines.conftest import process_gone, task_pid, wait_run
from tests.support import ServerProcess


def test_running_run_is_failed_after_a_crash(tmp_path: Path) -> None:
    package = tmp_path / "hanging.yaml"
    compiler.Compiler().compile(samples.hanging, str(package))
    from kfbox.pipelines.spec import parse_package

    spec = parse_package(package.read_bytes())
    home = tmp_path / "home"
    first = ServerProcess.start(home)
    try:
        created = httpx.post(f"{first.url}/apis/v2beta1/runs",
                             json={"display_name": "doomed", "pipeline_spec": spec,
                                   "runtime_config": {"parameters": {"seconds": 600}}}).json()
        wait_run(first, created["run_id"], states=("RUNNING",))
        pid = task_pid(first, created["run_id"], "hang")
    finally:
        first.kill()
    second = ServerProcess.start(home)
    try:
        body = httpx.get(f"{second.url}/apis/v2beta1/runs/{created['run_id']}").json()
        assert body["state"] == "FAILED"
        assert "server stopped while this run was running" in body["error"]["message"]
        assert [h["state"] for h in body["state_history"]] == ["PENDING", "RUNNING", "FAILED"]
        assert process_gone(pid), "the orphaned task process outlived the restart"
    finally:
        second.stop()
