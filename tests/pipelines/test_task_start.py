"""How tasks start: forked from a warm interpreter by default, plain subprocesses when turned off.

Either way a task must see its own inputs and environment and land in its own log; the
parallel-for body must read outputs made before the loop (a kfp.local 2.17 bug kfbox fixes).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from kfp import Client, compiler

from kfbox.pipelines.forkserver import lightweight_arguments, modules_to_preload
from tests.pipelines import sample_pipelines as samples
from tests.pipelines.conftest import tasks_by_path, wait_run
from tests.support import ServerProcess


def combine_outputs(server: ServerProcess) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client = Client(host=f"{server.url}/pipeline")
    result = client.create_run_from_pipeline_func(samples.loop_reads_outer_output, enable_caching=False)
    body = wait_run(server, result.run_id)
    assert body["state"] == "SUCCEEDED", body.get("error")
    outputs = [t["parameters"]["Output"] for path, t in tasks_by_path(body).items() if path.endswith("combine")]
    return sorted(outputs)


@pytest.mark.parametrize("fork", ["true", "false"])
def test_loop_body_reads_outer_output_and_task_environment(tmp_path: Path, fork: str) -> None:
    server = ServerProcess.start(tmp_path / "home", extra_env={"KFBOX_PIPELINES_FORK_TASKS": fork})
    try:
        outputs = combine_outputs(server)
    finally:
        server.stop()
    assert [o.rsplit(":", 1)[0] for o in outputs] == ["2:made-before-the-loop:from-the-task",
                                                       "9:made-before-the-loop:from-the-task"]
    pids = {o.rsplit(":", 1)[1] for o in outputs}
    assert len(pids) == 2  # each task is a process of its own, forked or not


def test_only_the_standard_lightweight_command_is_forked(tmp_path: Path) -> None:
    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(samples.loop_reads_outer_output, str(package))
    import yaml

    spec = yaml.safe_load(package.read_text())
    container = spec["deploymentSpec"]["executors"]["exec-combine"]["container"]
    parsed = lightweight_arguments(container["command"] + container["args"])
    assert parsed is not None
    source, arguments = parsed
    assert "def combine(" in source
    assert arguments == container["args"]
    assert lightweight_arguments(["python", "-c", "print(1)"]) is None


def test_preloads_only_what_the_component_imports_from_its_own_packages() -> None:
    source = "def f():\n    import os\n    from sklearn.neighbors import KNeighborsClassifier\n    import yaml\n"
    assert modules_to_preload(source, ["scikit-learn>=1.0"]) == ["sklearn.neighbors"]
    assert modules_to_preload(source, []) == []
    assert modules_to_preload("def broken(:\n", ["scikit-learn"]) == []


def test_imports_tried_for_an_import_error_are_left_to_the_task() -> None:
    source = ("def f():\n    import yaml\n    try:\n        import boto3\n"
              "    except ImportError:\n        from model_registry import ModelRegistry\n")
    assert modules_to_preload(source, ["pyyaml", "model-registry", "boto3"]) == ["yaml"]


def test_kfbox_tried_first_is_preloaded_its_fallback_is_not() -> None:
    """On a kfbox task server the ``try: from kfbox...`` branch is the one a task takes (kfbox is the server)."""
    source = ("def f():\n    import yaml\n    try:\n        from kfbox.client.registry import RegistryClient\n"
              "    except ImportError:\n        from model_registry import ModelRegistry\n")
    assert modules_to_preload(source, ["pyyaml", "model-registry"]) == ["yaml", "kfbox.client.registry"]
    fallback_only = ("def f():\n    try:\n        from model_registry import ModelRegistry\n"
                     "    except ImportError:\n        from kfbox.client import RegistryClient\n")
    assert modules_to_preload(fallback_only, ["model-registry"]) == []
