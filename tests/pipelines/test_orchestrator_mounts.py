"""Mount paths inside the task's own mount namespace: ``mount_pvc`` and secret / config map volumes.

A task sees its PVC folder at ``mount_path`` and its secret's keys as files at the volume's mount
path, through bind mounts in a private mount namespace (kfbox.pipelines.sandbox); the host never
gets anything at those paths -- the test polls for them during the whole run. Real task processes
(forked and plain), no Kubernetes: the kfp-kubernetes settings are compiled by kfp-kubernetes.
"""

# no `from __future__ import annotations`: kfp reads the components' annotations as types

import json
import os
import threading
import uuid
from pathlib import Path

import pytest
from kfp import dsl, kubernetes

from kfbox.pipelines import sandbox
from tests.pipelines.test_orchestrator import run


def _watch(paths: list[str]) -> tuple[threading.Event, list[str]]:
    """Poll ``paths`` on the host until told to stop; what was ever seen there."""
    stop = threading.Event()
    seen: list[str] = []

    def poll() -> None:
        while not stop.is_set():
            seen.extend(p for p in paths if os.path.lexists(p))
            stop.wait(0.01)

    threading.Thread(target=poll, daemon=True).start()
    return stop, seen


def test_mount_namespaces_are_available_here() -> None:
    assert sandbox.available() is None  # else the two tests below could not pass: say it plainly


@pytest.mark.parametrize("fork_tasks", [True, False], ids=["forked", "subprocess"])
def test_pvc_mounted_at_its_path_for_the_tasks_only(tmp_path: Path, fork_tasks: bool) -> None:
    mount = f"/kfbox-test-{uuid.uuid4().hex[:8]}/data"

    @dsl.component(base_image="python:3.11")
    def write(path: str) -> str:
        with open(f"{path}/note.txt", "w") as f:
            f.write("shared")
        return "ok"

    @dsl.component(base_image="python:3.11")
    def read(path: str) -> str:
        with open(f"{path}/note.txt") as f:
            return f.read()

    @dsl.pipeline(name="pvc")
    def pvc_pipeline() -> None:
        pvc = kubernetes.CreatePVC(pvc_name_suffix="-m", access_modes=["ReadWriteOnce"], size="1Gi")
        writer = write(path=mount).set_caching_options(False)
        kubernetes.mount_pvc(writer, pvc_name=pvc.outputs["name"], mount_path=mount)
        reader = read(path=mount).set_caching_options(False).after(writer)
        kubernetes.mount_pvc(reader, pvc_name=pvc.outputs["name"], mount_path=mount)

    stop, seen = _watch([mount, str(Path(mount).parent)])
    try:
        state, error, tasks = run(pvc_pipeline, tmp_path, fork_tasks=fork_tasks)
    finally:
        stop.set()
    assert state == "SUCCEEDED", error
    assert tasks["read"]["parameters"]["Output"] == "shared"
    name = tasks["createpvc"]["parameters"]["name"]
    assert (tmp_path / "run" / "pvc" / name / "note.txt").read_text() == "shared"
    assert not seen and not os.path.lexists(Path(mount).parent)


def test_a_link_or_file_at_the_mount_path_on_the_host_is_shadowed_not_touched(tmp_path: Path) -> None:
    """A dangling link (what the old engine left at /mnt/models) or a file at the mount path: the task
    still gets its PVC folder there, and the host's entry is exactly as it was."""
    base = Path(f"/kfbox-test-{uuid.uuid4().hex[:8]}")
    base.mkdir()
    try:
        (base / "models").symlink_to(tmp_path / "gone")  # dangling
        (base / "file").write_text("host")
        (base / "other").write_text("kept")

        @dsl.component(base_image="python:3.11")
        def use(first: str, second: str, sibling: str) -> str:
            for path in (first, second):
                with open(f"{path}/note.txt", "w") as f:
                    f.write("in the pvc")
            return open(sibling).read()

        @dsl.pipeline(name="shadow")
        def shadow() -> None:
            pvc = kubernetes.CreatePVC(pvc_name_suffix="-s", access_modes=["ReadWriteOnce"], size="1Gi")
            task = use(first=f"{base}/models", second=f"{base}/file/sub", sibling=f"{base}/other")
            task.set_caching_options(False)
            kubernetes.mount_pvc(task, pvc_name=pvc.outputs["name"], mount_path=f"{base}/models")
            kubernetes.mount_pvc(task, pvc_name=pvc.outputs["name"], mount_path=f"{base}/file/sub")

        state, error, tasks = run(shadow, tmp_path)
        assert state == "SUCCEEDED", error
        assert tasks["use"]["parameters"]["Output"] == "kept"  # the rest of the folder is still there
        name = tasks["createpvc"]["parameters"]["name"]
        assert (tmp_path / "run" / "pvc" / name / "note.txt").read_text() == "in the pvc"
        assert os.readlink(base / "models") == str(tmp_path / "gone") and (base / "file").read_text() == "host"
    finally:
        for entry in base.iterdir():
            entry.unlink()
        base.rmdir()


def test_secret_and_config_map_volumes_are_files_at_their_mount_paths(tmp_path: Path) -> None:
    base = f"/kfbox-test-{uuid.uuid4().hex[:8]}"

    @dsl.component(base_image="python:3.11")
    def show(secret_dir: str, config_dir: str) -> str:
        import json
        import os

        return json.dumps({"password": open(f"{secret_dir}/password").read(),
                           "level": open(f"{config_dir}/level").read(),
                           "files": sorted(os.listdir(secret_dir))})

    @dsl.pipeline(name="volumes")
    def volumes() -> None:
        task = show(secret_dir=f"{base}/secret", config_dir="/mnt/kfbox-config").set_caching_options(False)
        kubernetes.use_secret_as_volume(task, secret_name="creds", mount_path=f"{base}/secret")
        kubernetes.use_config_map_as_volume(task, config_map_name="tuning", mount_path="/mnt/kfbox-config")

    (tmp_path / "run").mkdir(parents=True)
    (tmp_path / "run" / "secret-env.json").write_text(json.dumps(
        {"secret": {"creds": {"password": "s3cret", "user": "ada"}}, "configmap": {"tuning": {"level": "7"}}}))
    config_existed = os.path.lexists("/mnt/kfbox-config")
    stop, seen = _watch([base, "/mnt/kfbox-config"])
    try:
        state, error, tasks = run(volumes, tmp_path)
    finally:
        stop.set()
    assert state == "SUCCEEDED", error
    assert json.loads(tasks["show"]["parameters"]["Output"]) == {"password": "s3cret", "level": "7",
                                                                 "files": ["password", "user"]}
    assert not config_existed and not seen
    assert not (Path(tasks["show"]["log"]).parent / "volumes").exists()  # the secret files went with the task
    assert "s3cret" not in Path(tasks["show"]["log"]).read_text()


def test_a_mount_path_that_would_hide_the_whole_filesystem_fails_the_task_saying_so(tmp_path: Path) -> None:
    @dsl.component(base_image="python:3.11")
    def nothing() -> str:
        return "ran"

    @dsl.pipeline(name="root-mount")
    def root_mount() -> None:
        pvc = kubernetes.CreatePVC(pvc_name_suffix="-r", access_modes=["ReadWriteOnce"], size="1Gi")
        kubernetes.mount_pvc(nothing().set_caching_options(False), pvc_name=pvc.outputs["name"], mount_path="/")

    state, _, tasks = run(root_mount, tmp_path)
    assert state == "FAILED"
    assert "mount path '/' must be an absolute path below /" in tasks["nothing"]["error"]
