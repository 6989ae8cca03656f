"""The task server runs torch tasks; an import that kills the server never takes a task down with it.

The bug these guard: a spare worker's folder (the task server's starting folder) is deleted when a run
is handed over, and importing torch with a deleted working directory kills the process (oneMKL
"Cannot load libtorch_cpu.so", exit 2), so every torch task of the LLM workflow died at start.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

from kfbox.pipelines.forkserver import TaskForker
from kfbox.server import warm
from tests.support import require

require("torch", "the llm extra is not installed: make install-llm")
TORCH = ["torch==2.13.0"]


@dsl.component(base_image="python:3.11", packages_to_install=TORCH)
def train_a_step(rows: int) -> float:
    import torch

    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 3)
    loss = torch.nn.functional.cross_entropy(layer(torch.randn(rows, 8)), torch.randint(0, 3, (rows,)))
    loss.backward()
    torch.optim.SGD(layer.parameters(), lr=0.1).step()
    return float(loss.detach())


@dsl.pipeline
def one_step(rows: int = 16) -> None:
    train_a_step(rows=rows)


def command(tmp_path: Path, name: str, packages: list[str] | None = None) -> list[str]:
    """The compiled task's command with its executor input, as the engine hands it to the task server."""
    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(one_step, str(package))
    container = yaml.safe_load(package.read_text())["deploymentSpec"]["executors"]["exec-train-a-step"]["container"]
    executor_input = {"inputs": {"parameterValues": {"rows": 16}},
                      "outputs": {"parameters": {"Output": {"outputFile": str(tmp_path / f"{name}.out")}},
                                  "outputFile": str(tmp_path / f"{name}.json")}}
    parts = container["command"] + [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
    return [p.replace("python3 -m kfp", f"{sys.executable} -m kfp") for p in parts]


def test_torch_task_forks_after_the_servers_start_folder_is_deleted(tmp_path: Path) -> None:
    start = tmp_path / "spare"
    start.mkdir()
    here = Path.cwd()
    os.chdir(start)  # the task server starts where its worker is, as a spare worker's does
    try:
        forker = TaskForker()
    finally:
        os.chdir(here)
    try:
        shutil.rmtree(start)  # the hand-over removes the spare's folder
        for name in ("train",):  # torch is imported by the server (preloaded), then the task forks
            started = forker.start(command(tmp_path, name), dict(os.environ), tmp_path / f"{name}.log", TORCH,
                                   tmp_path)
            assert started is not None, (tmp_path / f"{name}.log").read_text()
            pid, conn = started
            with conn:
                code = int.from_bytes(warm.read_exactly(conn, 4), "big", signed=True)
            assert pid > 0 and code == 0, (tmp_path / f"{name}.log").read_text()
            written = json.loads((tmp_path / f"{name}.json").read_text())
            assert written["parameterValues"]["Output"] > 0  # a real cross-entropy loss
    finally:
        forker.close()


def test_a_server_killed_by_an_import_hands_the_task_back_to_be_started_fresh(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # a real installed distribution whose import ends the task server (only there), as torch's did
    site = tmp_path / "site"
    (site / "fatal_in_server").mkdir(parents=True)
    (site / "fatal_in_server" / "__init__.py").write_text(
        "import os, sys\nif sys.argv[0].endswith('forkserver.py'):\n    os._exit(2)\n")
    info = site / "fatal_in_server-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fatal-in-server\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("fatal_in_server\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    source = "def task():\n    import fatal_in_server\n"
    parts = ["sh", "-ec", 'python3 -m kfp.dsl.executor_main "$0" "$@"', source, "--executor_input", "{}"]
    forker = TaskForker()
    try:
        log = tmp_path / "task.log"
        assert forker.start(parts, dict(os.environ), log, ["fatal-in-server"], tmp_path) is None  # start it fresh
        assert "the task server exited with code 2 while importing ['fatal_in_server']" in log.read_text()
        assert forker.start(parts, dict(os.environ), log, [], tmp_path) is None  # and the next ones too
    finally:
        forker.close()
