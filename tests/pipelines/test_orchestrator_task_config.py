"""The run's workspace and ``dsl.TaskConfig``, as the KFP driver provides them.

Workspace: ``dsl.WORKSPACE_PATH_PLACEHOLDER`` becomes ``/kfp-workspace``, where every task that refers
to it sees the run's own workspace folder (inside its mount namespace; the host never gets the path).
TaskConfig: a component with ``task_config_passthroughs`` receives its pod settings in the driver's
shape, and a passed-through field reaches the task itself only with ``apply_to_task``. Real task
processes; the kfp-kubernetes settings are compiled by kfp-kubernetes.
"""

# no `from __future__ import annotations`: kfp reads the components' annotations as types

import json
import os
import threading
import uuid
from pathlib import Path

from kfp import dsl, kubernetes

from tests.pipelines.test_orchestrator import run

WORKSPACE = dsl.PipelineConfig(workspace=dsl.WorkspaceConfig(size="1Mi"))


def _watch(path: str) -> tuple[threading.Event, list[str]]:
    stop = threading.Event()
    seen: list[str] = []

    def poll() -> None:
        while not stop.is_set():
            if os.path.lexists(path):
                seen.append(path)
            stop.wait(0.01)

    threading.Thread(target=poll, daemon=True).start()
    return stop, seen


@dsl.component(base_image="python:3.11")
def write_note(workspace_path: str) -> str:
    import os

    os.makedirs(f"{workspace_path}/data", exist_ok=True)
    with open(f"{workspace_path}/data/note.txt", "w") as f:
        f.write("from the writer")
    return f"{workspace_path}/data/note.txt"


@dsl.component(base_image="python:3.11")
def read_note(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_the_workspace_is_one_folder_per_run_seen_at_kfp_workspace(tmp_path: Path) -> None:
    @dsl.pipeline(name="workspace", pipeline_config=WORKSPACE)
    def workspace_pipeline() -> str:
        writer = write_note(workspace_path=dsl.WORKSPACE_PATH_PLACEHOLDER).set_caching_options(False)
        return read_note(path=writer.output).set_caching_options(False).output  # a path under /kfp-workspace

    stop, seen = _watch("/kfp-workspace")
    try:
        state, error, tasks = run(workspace_pipeline, tmp_path)
    finally:
        stop.set()
    assert state == "SUCCEEDED", error
    assert tasks["write-note"]["inputs"]["parameters"]["workspace_path"] == "/kfp-workspace"
    assert tasks["write-note"]["parameters"]["Output"] == "/kfp-workspace/data/note.txt"
    assert tasks["read-note"]["parameters"]["Output"] == "from the writer"
    assert (tmp_path / "run" / "workspace" / "data" / "note.txt").read_text() == "from the writer"
    assert not seen and not os.path.lexists("/kfp-workspace")


def test_task_config_carries_the_pod_settings_and_applies_only_what_is_asked(tmp_path: Path) -> None:
    mount = f"/kfbox-test-{uuid.uuid4().hex[:8]}"

    @dsl.component(base_image="python:3.11", task_config_passthroughs=[
        dsl.TaskConfigField.ENV,  # passed on, not applied to this task
        dsl.TaskConfigField.RESOURCES,
        dsl.TaskConfigPassthrough(field=dsl.TaskConfigField.KUBERNETES_VOLUMES, apply_to_task=True),
        dsl.TaskConfigField.KUBERNETES_NODE_SELECTOR,
        dsl.TaskConfigField.KUBERNETES_TOLERATIONS,
        dsl.TaskConfigField.KUBERNETES_AFFINITY,
    ])
    def hand_on(workspace_path: str, mount: str, task_config: dsl.TaskConfig) -> str:
        import dataclasses
        import json
        import os

        return json.dumps({"config": dataclasses.asdict(task_config), "env": os.environ.get("STAGE"),
                           "mounted": os.path.isdir(mount), "workspace": os.path.isdir(workspace_path)})

    @dsl.component(base_image="python:3.11")
    def plain(task_config: dsl.TaskConfig) -> str:
        import dataclasses
        import json
        import os

        return json.dumps({"config": dataclasses.asdict(task_config), "env": os.environ.get("STAGE")})

    @dsl.pipeline(name="task-config", pipeline_config=WORKSPACE)
    def task_config_pipeline() -> None:
        pvc = kubernetes.CreatePVC(pvc_name="shared-data", access_modes=["ReadWriteOnce"], size="1Mi")
        task = (hand_on(workspace_path=dsl.WORKSPACE_PATH_PLACEHOLDER, mount=mount).set_caching_options(False)
                .set_cpu_limit("500m").set_memory_request("64Mi").set_accelerator_type("nvidia.com/gpu")
                .set_accelerator_limit(2).set_env_variable(name="STAGE", value="train"))
        kubernetes.mount_pvc(task, pvc_name=pvc.outputs["name"], mount_path=mount)
        kubernetes.add_node_selector(task, label_key="pool", label_value="gpu")
        kubernetes.add_toleration(task, key="gpu", operator="Exists", effect="NoSchedule", toleration_seconds=60)
        kubernetes.add_node_affinity(task, match_expressions=[{"key": "zone", "operator": "In", "values": ["a"]}],
                                     weight=10)
        kubernetes.DeletePVC(pvc_name=pvc.outputs["name"]).after(task)
        untouched = plain().set_caching_options(False).set_env_variable(name="STAGE", value="plain")
        kubernetes.add_node_selector(untouched, label_key="pool", label_value="cpu")

    state, error, tasks = run(task_config_pipeline, tmp_path)
    assert state == "SUCCEEDED", error
    got = json.loads(tasks["hand-on"]["parameters"]["Output"])
    assert got["config"] == {
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}],
        "node_selector": {"pool": "gpu"},
        "env": [{"name": "STAGE", "value": "train"}],
        "volumes": [{"name": "kfp-workspace", "persistentVolumeClaim": {"claimName": got["config"]["volumes"][0][
                        "persistentVolumeClaim"]["claimName"]}},
                    {"name": "shared-data", "persistentVolumeClaim": {"claimName": "shared-data"}}],
        "volume_mounts": [{"name": "kfp-workspace", "mountPath": "/kfp-workspace"},
                          {"name": "shared-data", "mountPath": mount}],
        "resources": {"limits": {"cpu": "500m", "nvidia.com/gpu": "2"}, "requests": {"memory": "64Mi"}},
    }
    assert got["config"]["volumes"][0]["persistentVolumeClaim"]["claimName"].endswith("-kfp-workspace")
    assert got["env"] is None  # ENV passed through without apply_to_task: not set on the task
    assert got["mounted"] and got["workspace"]  # KUBERNETES_VOLUMES with apply_to_task: mounted
    assert not os.path.lexists(mount)
    assert tasks["deletepvc"]["state"] == "SUCCEEDED" and not (tmp_path / "run" / "pvc" / "shared-data").exists()
    # no passthroughs: every setting applies to the task, and its TaskConfig is empty (as the driver leaves it)
    untouched = json.loads(tasks["plain"]["parameters"]["Output"])
    assert untouched == {"config": {"affinity": None, "tolerations": None, "node_selector": None, "env": None,
                                    "volumes": None, "volume_mounts": None, "resources": {}}, "env": "plain"}
