"""Shared helpers: a kfp.Client on the module's server, waiting for runs, and one server for the modules
that opt in to it (a module fixture ``server`` returning ``shared_server``)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kfp import Client

from tests.support import ServerProcess, loopback

FINAL = ("SUCCEEDED", "FAILED", "CANCELED")


@pytest.fixture(scope="package")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ``kfbox up`` for the API, CLI, execution, run-record and secrets modules: each names its own
    experiments, pipelines, secrets and models and checks only those, runs no schedule, and changes no
    setting. (Modules with settings of their own, restarts, schedules or whole-home checks start theirs.)"""
    proc = ServerProcess.start(tmp_path_factory.mktemp("home"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def kfp_client(server: ServerProcess) -> Client:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return Client(host=f"{server.url}/pipeline")


def wait_run(server: ServerProcess, run_id: str, timeout: float = 120, states: tuple[str, ...] = FINAL
             ) -> dict[str, Any]:
    """The run's raw v2beta1 JSON once it reaches one of ``states``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = loopback().get(f"{server.url}/apis/v2beta1/runs/{run_id}", timeout=10).json()
        if body["state"] in states:
            return body
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} not in {states} after {timeout}s: {body['state']}\n{server.log()[-2000:]}")


def tasks_by_path(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["path"]: t for t in body["run_details"]["task_details"] if t["path"]}


def task_pid(server: ServerProcess, run_id: str, task: str, timeout: float = 60) -> int:
    """The pid a task printed as ``pid=N`` in its log (the hanging sample does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = loopback().get(f"{server.url}/apis/v2beta1/runs/{run_id}/tasks/{task}/logs", timeout=10)
        if response.status_code == 200 and "pid=" in response.text:
            return int(response.text.split("pid=")[1].split()[0])
        time.sleep(0.2)
    raise AssertionError(f"task {task} of run {run_id} never printed its pid")


def process_gone(pid: int, timeout: float = 10) -> bool:
    """Gone or a zombie (killed, waiting for init to reap it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False
