"""What kfp.local lacks, mapped locally: cached venvs for missing packages, PVC folders, platform addresses."""

# no `from __future__ import annotations`: kfp reads the components' annotations as types

import importlib.metadata
import json
import zipfile
from pathlib import Path

import httpx
import pytest
from kfp import Client, dsl, kubernetes

from tests.pipelines.conftest import tasks_by_path, wait_run
from tests.support import ServerProcess


def build_wheel(folder: Path) -> Path:
    """A real, dependency-free wheel, so pip can install it with no index at all."""
    path = folder / "kfbox_demo_pkg-1.0-py3-none-any.whl"
    info = "kfbox_demo_pkg-1.0.dist-info"
    files = {
        "kfbox_demo_pkg/__init__.py": "VALUE = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: kfbox-demo-pkg\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: kfbox-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr(f"{info}/RECORD", "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"]))
    return path


def test_missing_packages_get_one_cached_venv_and_leave_kfbox_alone(server: ServerProcess, kfp_client: Client,
                                                                   tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)

    def use_demo(step: int) -> int:
        import kfbox_demo_pkg

        return kfbox_demo_pkg.VALUE + step

    component = dsl.component(use_demo, base_image="python:3.11", packages_to_install=[str(wheel)])

    @dsl.pipeline(name="venv")
    def venv_pipeline() -> None:
        first = component(step=1)
        second = component(step=2).after(first)
        for task in (first, second):
            task.set_env_variable("PIP_NO_INDEX", "1")  # offline: only the local wheel can be installed
            task.set_caching_options(False)

    runs = [kfp_client.create_run_from_pipeline_func(venv_pipeline).run_id for _ in range(2)]
    bodies = [wait_run(server, run_id) for run_id in runs]
    assert [b["state"] for b in bodies] == ["SUCCEEDED", "SUCCEEDED"], [b["error"] for b in bodies]
    outputs = sorted(t["parameters"]["Output"] for b in bodies for t in tasks_by_path(b).values())
    assert outputs == [43, 43, 44, 44]
    venvs = [p for p in (server.home / "venvs").iterdir() if p.is_dir()]
    assert len(venvs) == 1
    logs = [httpx.get(f"{server.url}/apis/v2beta1/runs/{run_id}/tasks/{name}/logs").text
            for run_id in runs for name in ("use-demo", "use-demo-2")]
    assert sum("building virtual environment" in log for log in logs) == 1
    assert sum("reusing virtual environment" in log for log in logs) == 3
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("kfbox-demo-pkg")


def test_pvc_folders_and_platform_addresses(server: ServerProcess, kfp_client: Client, tmp_path: Path) -> None:
    mount = tmp_path / "mnt" / "data"

    @dsl.component(base_image="python:3.11")
    def write_shared(path: str) -> str:
        import json
        import os

        with open(os.path.join(path, "note.txt"), "w") as f:
            f.write("shared")
        keys = ("MODEL_REGISTRY_HOST", "MODEL_REGISTRY_PORT", "KFBOX_URL", "KFBOX_PVC_ROOT", "GREETING")
        seen = {k: os.environ.get(k) for k in keys}
        seen["normal_priority"] = os.sched_getscheduler(0) == os.SCHED_OTHER  # not the spare worker's idle one
        return json.dumps(seen)

    @dsl.component(base_image="python:3.11")
    def read_shared(pvc: str) -> str:
        import os

        with open(os.path.join(os.environ["KFBOX_PVC_ROOT"], pvc, "note.txt")) as f:
            return f.read()

    @dsl.pipeline(name="volumes")
    def volumes() -> None:
        pvc = kubernetes.CreatePVC(pvc_name_suffix="-shared", access_modes=["ReadWriteOnce"], size="1Gi")
        writer = write_shared(path=str(mount))
        writer.set_env_variable("GREETING", "hi")
        kubernetes.mount_pvc(writer, pvc_name=pvc.outputs["name"], mount_path=str(mount))
        read_shared(pvc=pvc.outputs["name"]).after(writer)

    result = kfp_client.create_run_from_pipeline_func(volumes)
    body = wait_run(server, result.run_id)
    assert body["state"] == "SUCCEEDED", body["error"]
    tasks = tasks_by_path(body)
    name = tasks["createpvc"]["parameters"]["name"]
    assert name == f"{result.run_id[:8]}-shared"
    assert (server.home / "pvc" / name / "note.txt").read_text() == "shared"
    assert tasks["read-shared"]["parameters"]["Output"] == "shared"
    env = json.loads(tasks["write-shared"]["parameters"]["Output"])
    assert env == {"MODEL_REGISTRY_HOST": "http://127.0.0.1", "MODEL_REGISTRY_PORT": str(server.port),
                   "KFBOX_URL": server.url, "KFBOX_PVC_ROOT": str(server.home / "pvc"), "GREETING": "hi",
                   "normal_priority": True}


def test_secret_and_config_map_env_and_what_has_no_local_equivalent(server: ServerProcess,
                                                                     kfp_client: Client) -> None:
    @dsl.component(base_image="python:3.11")
    def show() -> str:
        import os

        return f"{os.environ['PASSWORD']}/{os.environ['LEVEL']}/{os.environ['POD'].startswith('secrets-')}"

    @dsl.pipeline(name="secrets")
    def secrets() -> None:
        task = show().set_caching_options(False)
        kubernetes.use_secret_as_env(task, secret_name="creds", secret_key_to_env={"password": "PASSWORD"})
        kubernetes.use_config_map_as_env(task, config_map_name="tuning", config_map_key_to_env={"level": "LEVEL"})
        kubernetes.use_field_path_as_env(task, env_name="POD", field_path="metadata.name")

    missing = kfp_client.get_run(kfp_client.create_run_from_pipeline_func(secrets).run_id)
    missing = kfp_client.wait_for_run_completion(missing.run_id, timeout=60, sleep_duration=0.3)
    assert missing.state == "FAILED" and "secret 'creds', which does not exist" in missing.error.message
    api = f"{server.url}/kfbox/v1"
    assert httpx.put(f"{api}/secrets/creds", json={"data": {"password": "s3cret"}}).status_code < 300
    assert httpx.put(f"{api}/configmaps/tuning", json={"data": {"level": "high"}}).status_code < 300
    result = kfp_client.create_run_from_pipeline_func(secrets)
    body = wait_run(server, result.run_id)
    assert body["state"] == "SUCCEEDED", body["error"]
    assert tasks_by_path(body)["show"]["parameters"]["Output"] == "s3cret/high/True"
    assert not list((server.home / "runs" / result.run_id).glob("secret-env.json"))  # read once, then removed

    @dsl.component(base_image="python:3.11")
    def read_volume() -> str:
        with open("/mnt/kfbox-creds/password") as f:
            return f.read()

    @dsl.pipeline(name="volume")
    def volume() -> None:  # the file exists in the task's own mount namespace only (tests/.../test_orchestrator_mounts)
        kubernetes.use_secret_as_volume(read_volume().set_caching_options(False), secret_name="creds",
                                        mount_path="/mnt/kfbox-creds")

    body = wait_run(server, kfp_client.create_run_from_pipeline_func(volume).run_id)
    assert body["state"] == "SUCCEEDED", body["error"]
    assert tasks_by_path(body)["read-volume"]["parameters"]["Output"] == "s3cret"
    assert not Path("/mnt/kfbox-creds").exists()
