"""``dsl.importer`` of an ``oci://`` Modelcar image: its ``/models`` folder reaches the downstream task.

This machine has no Docker or Podman engine and no OCI registry, so the engine is a fake ``docker``
CLI on PATH (a shell script that answers ``info``, "pulls" one known image on ``create``, writes model
files on ``cp`` and records every call); the engine run and the task reading the files are real.
Without an engine the URI is refused, naming what is needed.
"""

# no `from __future__ import annotations`: kfp reads the components' annotations as types

import os
from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl
from kfp.dsl import Input, Model

from kfbox.config import Settings
from kfbox.errors import InvalidInput
from kfbox.pipelines.importer import check_uri
from kfbox.pipelines.orchestrator.ir import Pipeline, check
from tests.pipelines.test_orchestrator import run

IMAGE = "registry.local/org/model:v1"


def fake_docker(folder: Path) -> Path:
    """A ``docker`` that knows one image, ``IMAGE``, whose /models holds two files."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "docker"
    script.write_text(f"""#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls.txt"
case "$1" in
  info) echo "{{}}" ;;
  create) [ "$2" = "{IMAGE}" ] || {{ echo "Error: pull access denied for $2" >&2; exit 1; }}; echo "c0ffee" ;;
  cp) mkdir -p "$3"; printf weights > "$3/model.safetensors"; printf '{{}}' > "$3/config.json" ;;
esac
""")
    script.chmod(0o755)
    return folder / "calls.txt"


@dsl.component(base_image="python:3.11")
def list_files(model: Input[Model]) -> str:
    import os

    return ",".join(sorted(os.listdir(model.path)))


def importing(uri: str) -> Any:
    @dsl.pipeline(name="modelcar")
    def pipeline() -> None:
        imported = dsl.importer(artifact_uri=uri, artifact_class=Model)
        list_files(model=imported.output).set_caching_options(False)

    return pipeline


def test_the_images_models_folder_reaches_the_downstream_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    calls = fake_docker(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    state, error, tasks = run(importing(f"oci://{IMAGE}"), tmp_path / "r", container_runtime="docker")
    assert state == "SUCCEEDED", error
    assert tasks["list-files"]["parameters"]["Output"] == "config.json,model.safetensors"
    assert tasks["importer"]["artifacts"][0]["uri"] == f"oci://{IMAGE}"  # the record keeps the URI as given
    made = [line.split()[0] for line in calls.read_text().splitlines() if not line.startswith("info")]
    assert made == ["create", "cp", "rm"]  # the container only ever held the files: removed after the copy


def test_an_image_that_cannot_be_pulled_fails_the_importer_with_the_engines_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    state, _, tasks = run(importing("oci://registry.local/other:v1"), tmp_path / "r", container_runtime="docker")
    assert state == "FAILED"
    assert "could not pull the image" in tasks["importer"]["error"]
    assert "pull access denied for registry.local/other:v1" in tasks["importer"]["error"]


def test_without_an_engine_the_uri_is_refused_naming_what_it_needs(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}")  # no docker, no podman
    with pytest.raises(InvalidInput, match="needs docker or podman with a running engine"):
        check_uri(f"oci://{IMAGE}", Settings(home=tmp_path / "home"))
    with pytest.raises(InvalidInput, match="host mode has no image store"):
        check_uri(f"oci://{IMAGE}", Settings(home=tmp_path / "home", container_runtime="host"))
    # a constant URI: refused at submit, naming the importer's executor
    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(importing(f"oci://{IMAGE}"), str(package))
    import yaml

    problems = check(Pipeline(yaml.safe_load(package.read_text())), Settings(home=tmp_path / "home"))
    assert any(p.startswith("executor 'exec-importer'") and "Modelcar" in p for p in problems), problems
