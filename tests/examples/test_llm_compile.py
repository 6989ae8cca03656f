"""The LLM pipeline compiles to KFP IR that a Kubeflow cluster accepts, with a GPU request when asked.

No Kubernetes API server exists here, so the cluster side is checked on the compiled IR: the
structure the KFP backend and its driver read (resources, images, the pip preludes).
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from kfp import compiler

LLM = Path(__file__).resolve().parents[2] / "examples" / "llm"


@pytest.fixture(scope="module")
def pipeline() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llm_pipeline", LLM / "pipeline.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["llm_pipeline"] = module
    spec.loader.exec_module(module)
    return module


def compiled(pipeline_func: Any, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "llm.yaml"
    compiler.Compiler().compile(pipeline_func, str(out))
    (spec,) = yaml.safe_load_all(out.read_text())
    return dict(spec)


def test_pipeline_shape_and_defaults(pipeline: ModuleType, tmp_path: Path) -> None:
    spec = compiled(pipeline.llm_fine_tuning, tmp_path)
    assert spec["pipelineInfo"]["name"] == "llm-fine-tuning"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["source"]["defaultValue"] == "drugreview"
    assert params["lora_r"]["defaultValue"] == 8
    assert params["truncation_side"]["defaultValue"] == "left"  # a long review keeps its end (its verdict)
    tasks = spec["root"]["dag"]["tasks"]
    assert {"load-reviews", "tokenize", "fine-tune", "evaluate-against-base", "register-model",
            "publish-to-hub"} <= set(tasks)
    assert tasks["register-model"]["cachingOptions"] == {}  # a side effect: never replayed from cache
    assert set(tasks["register-model"]["dependentTasks"]) >= {"fine-tune", "evaluate-against-base"}
    executors = spec["deploymentSpec"]["executors"]
    assert all(e["container"]["image"] == "python:3.11" for e in executors.values())
    train = " ".join(executors["exec-fine-tune"]["container"]["command"])
    assert "torch==2.13.0" in train and "peft" in train  # pinned with peft, so no CUDA wheel is pulled
    resources = executors["exec-fine-tune"]["container"]["resources"]
    assert "accelerator" not in resources


def test_gpu_flag_requests_a_gpu_for_the_fine_tune(pipeline: ModuleType, tmp_path: Path) -> None:
    spec = compiled(pipeline.build(gpu=True), tmp_path)
    executors = spec["deploymentSpec"]["executors"]
    accelerator = executors["exec-fine-tune"]["container"]["resources"]["accelerator"]
    assert accelerator["resourceType"] == "nvidia.com/gpu" and int(accelerator["resourceCount"]) == 1
    assert "accelerator" not in executors["exec-tokenize"]["container"].get("resources", {})


def test_command_line_compiles_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The script's ``__main__`` block as ``python pipeline.py --gpu -o FILE`` runs it, in this process
    (a new interpreter would only add a ~3 s kfp import)."""
    out = tmp_path / "gpu.yaml"
    monkeypatch.setattr(sys, "argv", [str(LLM / "pipeline.py"), "--gpu", "-o", str(out)])
    runpy.run_path(str(LLM / "pipeline.py"), run_name="__main__")
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert "nvidia.com/gpu" in out.read_text()
