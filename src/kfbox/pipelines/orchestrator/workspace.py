"""The run's workspace (``PipelineConfig(workspace=WorkspaceConfig(...))``): one folder per run.

On a cluster the backend creates one PVC per run (``<run name>-kfp-workspace``), the driver replaces
``dsl.WORKSPACE_PATH_PLACEHOLDER`` (``{{$.workspace_path}}``) with ``/kfp-workspace`` and mounts the
PVC there in every task whose inputs hold the placeholder or a path under ``/kfp-workspace``
(``needsWorkspaceMount`` in ``backend/src/v2/driver``). Here the PVC is the folder ``workspace`` in
the run's own folder (it goes with the run), bind-mounted at ``/kfp-workspace`` inside the task's
mount namespace. Where this machine gives no mount namespaces, the placeholder becomes the folder's
own path instead, so the files are still shared by the run's tasks (said in each task's log).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MOUNT_PATH = "/kfp-workspace"
PLACEHOLDER = "{{$.workspace_path}}"
VOLUME_NAME = "kfp-workspace"


def needed(parameters: dict[str, Any], mount_point: str) -> bool:
    """Whether a task's resolved inputs refer to the workspace (the driver's ``needsWorkspaceMount``)."""
    return any(isinstance(value, str) and (PLACEHOLDER in value or value.startswith(mount_point))
               for value in parameters.values())


def claim_name(run_resource_name: str) -> str:
    """The workspace PVC's name on a cluster (``GetWorkspacePVCName``), shown in a task's TaskConfig."""
    return f"{run_resource_name}-{VOLUME_NAME}"


def folder(run_folder: Path) -> Path:
    path = run_folder / "workspace"
    path.mkdir(parents=True, exist_ok=True)
    return path
