"""A spare's task server imports what the last run's tasks used, so the next run's first task does not wait.

Real task servers and forked tasks; the "package" is yaml (PyYAML), which the task server does not
import by itself.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from kfbox.pipelines.forkserver import PRELOAD_MAX, TaskForker, remembered_preload
from kfbox.server import warm

# a lightweight component's command as the compiler writes it; the task reports whether yaml was
# already imported when it started (forked from a server that had imported it) before importing it
SOURCE = ("def task(out: str):\n    import sys\n    warm = 'yaml' in sys.modules\n    import yaml\n"
          "    open(out, 'w').write(str(warm))\n")


def task_command(out: Path, source: str = SOURCE) -> list[str]:
    script = f'{sys.executable} -m kfp.dsl.executor_main "$0" "$@"'
    executor_input = {"inputs": {"parameterValues": {"out": str(out)}}, "outputs": {"outputFile": str(out) + ".json"}}
    return ["sh", "-ec", script, source, "--executor_input", json.dumps(executor_input), "--function_to_execute",
            "task"]


def run_task(forker: TaskForker, tmp_path: Path, name: str, packages: list[str], source: str = SOURCE) -> str:
    """Run the task; "True" when yaml was imported before it started. ``packages`` are its declared ones
    (the server imports those on request, before the fork)."""
    out = tmp_path / name
    started = forker.start(task_command(out, source), dict(os.environ), tmp_path / f"{name}.log", packages, tmp_path)
    assert started is not None
    _pid, conn = started
    with conn:
        code = int.from_bytes(warm.read_exactly(conn, 4), "big", signed=True)
    assert code == 0, (tmp_path / f"{name}.log").read_text()
    return out.read_text()


def test_the_modules_a_run_imported_are_remembered_and_preloaded_by_the_next_server(tmp_path: Path) -> None:
    memory = tmp_path / "runs" / ".task-preload.json"
    memory.parent.mkdir()
    assert remembered_preload(memory) == []  # a fresh home: nothing is preloaded

    first = TaskForker(memory=memory)
    try:
        assert run_task(first, tmp_path, "a", ["pyyaml"]) == "True"  # imported on request, before the fork
        assert run_task(first, tmp_path, "b", []) == "True"  # and it stays imported in the server
    finally:
        first.close()
    assert remembered_preload(memory) == ["yaml"]

    cold = TaskForker()
    try:  # a server told nothing has not imported it
        assert run_task(cold, tmp_path, "c", []) == "False"
    finally:
        cold.close()
    warm = TaskForker(remembered_preload(memory))
    try:  # told the remembered modules, it imports them as it starts, while no task waits
        assert any(run_task(warm, tmp_path, f"d{i}", []) == "True" or time.sleep(0.1) for i in range(100))
    finally:
        warm.close()


def test_a_task_does_not_wait_for_remembered_modules_it_does_not_import(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Remembered modules are imported while no task waits: a task that is already waiting goes first.

    ``gate`` (the remembered module) finishes importing only once a flag file exists; the task asked at
    once is forked and ends before that, without it."""
    flag = tmp_path / "open"
    (tmp_path / "gate.py").write_text(f"import os, time\nwhile not os.path.exists({str(flag)!r}):\n"
                                      "    time.sleep(0.02)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    source = "def task(out: str):\n    import sys\n    open(out, 'w').write(str('gate' in sys.modules))\n"
    forker = TaskForker(["gate"])
    guard = threading.Timer(60, flag.touch)  # never hang the suite if the gate was entered first
    guard.start()
    try:
        assert run_task(forker, tmp_path, "first", [], source) == "False", "forked before the gate was imported"
        assert not flag.exists()
        flag.touch()
        assert any(run_task(forker, tmp_path, f"then{i}", [], source) == "True" or time.sleep(0.05)
                   for i in range(200)), "imported once no task waited"
    finally:
        guard.cancel()
        forker.close()


def test_a_damaged_memory_preloads_nothing(tmp_path: Path) -> None:
    memory = tmp_path / ".task-preload.json"
    for text, preloaded in (("not json", []), ('{"a": 1}', []), ('["ok", "not a module;rm -rf", 3]', ["ok"])):
        memory.write_text(text)
        assert remembered_preload(memory) == preloaded
    memory.write_text(json.dumps([f"m{i}" for i in range(100)]))
    assert len(remembered_preload(memory)) == PRELOAD_MAX
