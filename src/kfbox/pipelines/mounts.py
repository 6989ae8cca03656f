"""kfp-kubernetes volumes as local folders: a PVC named N is the folder ``<home>/pvc/N``.

``CreatePVC`` makes the folder (name: ``pvc_name``, else the run id's first 8 characters plus
``pvc_name_suffix``), ``DeletePVC`` removes it, and ``mount_pvc(task, pvc_name, mount_path)``
bind-mounts it at ``mount_path`` inside the task's own mount namespace -- so code that writes to
``/data`` on a cluster writes to the PVC folder here, and no ``/data`` appears on the host. The
same folders back ``pvc://`` storage URIs in serving.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kfbox.pipelines.sandbox import check_mount_path

_VALID = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class Mounts:
    def __init__(self, root: Path, run_id: str, platform_spec: dict[str, Any]) -> None:
        self.root = root
        self.run_id = run_id
        executors = platform_spec.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})
        self.executors: dict[str, Any] = executors.get("executors", {})

    def folder(self, name: str) -> Path:
        if not _VALID.match(name) or len(name) > 253:
            raise ValueError(f"PVC name {name!r} is not a valid Kubernetes name (lowercase letters, digits, '-', '.')")
        return self.root / name

    def claims(self, executor_label: str, io_store: Any) -> list[tuple[str, str]]:
        """``(PVC name, mount path)`` of every ``mount_pvc`` of this executor, in the IR's order."""
        return [(self._pvc_name(mount, io_store), check_mount_path(str(mount["mountPath"])))
                for mount in (self.executors.get(executor_label) or {}).get("pvcMount", [])]

    def binds(self, claims: list[tuple[str, str]]) -> dict[str, Path]:
        """``{mount path: PVC folder}`` of ``claims`` (folders created); the task sees them at their mount
        paths inside its own mount namespace (:mod:`kfbox.pipelines.sandbox`)."""
        binds: dict[str, Path] = {}
        for name, path in claims:
            folder = self.folder(name)
            folder.mkdir(parents=True, exist_ok=True)
            binds[path] = folder
        return binds

    def _pvc_name(self, mount: dict[str, Any], io_store: Any) -> str:
        source = mount.get("pvcNameParameter") or mount
        if "constant" in mount:
            return str(mount["constant"])
        runtime = source.get("runtimeValue", {})
        if "constant" in runtime:
            return str(runtime["constant"])
        output = source.get("taskOutputParameter")
        if output:
            return str(io_store.get_task_output(output["producerTask"], output["outputParameterKey"]))
        if source.get("componentInputParameter"):
            return str(io_store.get_parent_input(source["componentInputParameter"]))
        raise RuntimeError(f"mount_pvc: cannot tell which PVC to mount from {mount!r}")
