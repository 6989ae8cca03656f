"""The spare run worker setting: on (the default), the server keeps one kfp-importing worker waiting;
off (KFBOX_PIPELINES_SPARE_WORKER=0, what the test suite's non-pipeline servers use), there is none
and a run still runs, its worker started on demand."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.pipelines.conftest import tasks_by_path, wait_run
from tests.support import ServerProcess


def _spare_workers(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"--spare" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _spec(tmp_path: Path) -> dict[str, Any]:
    from kfp import compiler

    from kfbox.pipelines.spec import parse_package
    from tests.pipelines.sample_pipelines import failing

    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(failing, str(package))
    return parse_package(package.read_bytes())


def test_spare_worker_on_by_default_and_off_by_setting(tmp_path: Path) -> None:
    on = ServerProcess.start(tmp_path / "on", extra_env={"KFBOX_PIPELINES_SPARE_WORKER": "1"})
    off = ServerProcess.start(tmp_path / "off", extra_env={"KFBOX_PIPELINES_SPARE_WORKER": "0"})
    try:
        deadline = time.monotonic() + 30
        while not _spare_workers(on.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _spare_workers(on.process.pid), "no spare worker with the setting on"
        assert _spare_workers(off.process.pid) == []
        created = httpx.post(f"{off.url}/apis/v2beta1/runs", timeout=30,
                             json={"display_name": "on demand", "pipeline_spec": _spec(tmp_path)}).json()
        # the sample fails in its task, on purpose: a worker ran it (a run with no worker never ends)
        body = wait_run(off, created["run_id"])
        assert body["state"] == "FAILED", off.log()[-2000:]
        assert tasks_by_path(body)["explode"]["state"] == "FAILED"
        assert _spare_workers(off.process.pid) == []  # none kept after the run either
    finally:
        on.stop()
        off.stop()
