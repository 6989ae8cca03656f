"""A spare's task server imports what the last run's tasks used, so the next run's first task does not wait.

Real task servers and forked tasks; the "package" is yaml (PyYAML), which the task server does not
import by itself.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from kfbox.pipelines.forkserver import PRELOAD_MAX, TaskForker, _read_exactly, remembered_preload

# a lightweight component's command as the compiler writes it; the task reports whether yaml was
# already imported when it started (forked from a server that had imported it) before importing it
SOURCE = ("def task(out: str):\n    import sys\n    warm = 'yaml' in sys.modules\n    import yaml\n"
          "    open(out, 'w').write(str(warm))\n")


def task_command(out: Path) -> list[str]:
    script = f'{sys.executable} -m kfp.dsl.executor_main "$0" "$@"'
    executor_input = {"inputs": {"parameterValues": {"out": str(out)}}, "outputs": {"outputFile": str(out) + ".json"}}
    return ["sh", "-ec", script, SOURCE, "--executor_input", json.dumps(executor_input), "--function_to_execute",
            "task"]


def run_task(forker: TaskForker, tmp_path: Path, name: str, packages: list[str]) -> str:
    """Run the task; "True" when yaml was imported before it started. ``packages`` are its declared ones
    (the server imports those on request, before the fork)."""
    out = tmp_path / name
    started = forker.start(task_command(out), dict(os.environ), tmp_path / f"{name}.log", packages, tmp_path)
    assert started is not None
    _pid, conn = started
    with conn:
        code = int.from_bytes(_read_exactly(conn, 4), "big", signed=True)
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
    try:  # told the remembered modules, it imported them as it started
        assert run_task(warm, tmp_path, "d", []) == "True"
    finally:
        warm.close()


def test_a_damaged_memory_preloads_nothing(tmp_path: Path) -> None:
    memory = tmp_path / ".task-preload.json"
    for text, preloaded in (("not json", []), ('{"a": 1}', []), ('["ok", "not a module;rm -rf", 3]', ["ok"])):
        memory.write_text(text)
        assert remembered_preload(memory) == preloaded
    memory.write_text(json.dumps([f"m{i}" for i in range(100)]))
    assert len(remembered_preload(memory)) == PRELOAD_MAX
