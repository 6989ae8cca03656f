"""The spare run worker setting: on (the default), the server keeps one kfp-importing worker waiting
while the pipelines API is in use (started by its first request, retired after a quiet while, so an
idle server stays small); off (KFBOX_PIPELINES_SPARE_WORKER=0, what the test suite's non-pipeline
servers use), there is none and a run still runs, its worker started on demand."""

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
        time.sleep(1.5)  # more than the run loop's idle pass: a spare would have been started by now
        assert _spare_workers(on.process.pid) == [], "a spare worker before anyone used the pipelines API"
        httpx.get(f"{on.url}/apis/v2beta1/runs", timeout=30).raise_for_status()
        deadline = time.monotonic() + 30
        while not _spare_workers(on.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _spare_workers(on.process.pid), "no spare worker with the setting on, after an API call"
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


def test_the_spare_worker_is_retired_after_a_quiet_while(tmp_path: Path) -> None:
    """The supervisor's own keeper, with a real spare process; the run store plays no part here."""
    from kfbox.config import Settings
    from kfbox.pipelines import supervisor as module

    settings = Settings.load(home=tmp_path / "home", pipelines_spare_worker=True)
    keeper = module.Supervisor(settings, store=None)  # type: ignore[arg-type]
    try:
        keeper._keep_spare()
        assert keeper.spare is None, "started before any use"
        keeper.touch()
        keeper._keep_spare()
        spare = keeper.spare
        assert spare is not None and spare.alive
        keeper.last_use -= module.SPARE_IDLE_SECONDS + 1  # as if nobody used pipelines since
        keeper._keep_spare()
        assert keeper.spare is None
        assert spare.popen.poll() is not None, "the retired spare still runs"
        assert not list(settings.runs_dir.glob(".spare-*.log"))
    finally:
        if keeper.spare is not None:
            keeper.spare.stop(grace=0)
