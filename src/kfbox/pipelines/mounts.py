"""kfp-kubernetes volumes as local folders: a PVC named N is the folder ``<home>/pvc/N``.

``CreatePVC`` makes the folder (name: ``pvc_name``, else the run id's first 8 characters plus
``pvc_name_suffix``), ``DeletePVC`` removes it, and ``mount_pvc(task, pvc_name, mount_path)``
makes ``mount_path`` a symbolic link to it before the task starts -- so code that writes to
``/data`` on a cluster writes to the PVC folder here, when that path can be created. The
same folders back ``pvc://`` storage URIs in serving.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from kfbox.pipelines.spec import CREATE_PVC_IMAGE

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

    def run_pvc_task(self, image: str, kw: dict[str, Any]) -> dict[str, Any]:
        from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

        args = OrchestratorUtils.make_task_arguments(task_inputs_spec=kw["task_spec"].inputs, io_store=kw["io_store"])
        if image == CREATE_PVC_IMAGE:
            name = args.get("pvc_name") or f"{self.run_id[:8]}{args.get('pvc_name_suffix') or ''}"
            self.folder(name).mkdir(parents=True, exist_ok=True)
            return {"name": name}
        name = str(args.get("pvc_name") or "")
        shutil.rmtree(self.folder(name), ignore_errors=True)
        return {}

    def prepare(self, executor_label: str, io_store: Any) -> None:
        """Link every ``mount_pvc`` path of this executor to its PVC folder."""
        for mount in (self.executors.get(executor_label) or {}).get("pvcMount", []):
            name = self._pvc_name(mount, io_store)
            folder = self.folder(name)
            folder.mkdir(parents=True, exist_ok=True)
            link = Path(mount["mountPath"])
            if link.is_symlink() and Path(os.readlink(link)) == folder:
                continue
            if link.is_symlink():
                link.unlink()
            try:
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(folder, target_is_directory=True)
            except OSError as exc:
                raise RuntimeError(f"mount_pvc: cannot link mount path {str(link)!r} to PVC folder {folder}: "
                                   f"{exc.strerror}. Locally a mount path must be creatable by this user; "
                                   "read the folder from KFBOX_PVC_ROOT instead") from exc

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
