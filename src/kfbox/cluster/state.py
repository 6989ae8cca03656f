"""What an install has finished, in ``<home>/cluster/<name>/state.json``: re-runs skip, interruptions resume.

A step is recorded only after its last wait passed, with the fingerprint of its commands;
a re-run skips a step whose fingerprint matches, and starts an interrupted one over (every
action is idempotent: server-side apply, waits).

Example::

    state = InstallState.load(home, "kubeflow")
    state.finished("cert-manager", fingerprint)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any


def cluster_dir(home: Path, name: str) -> Path:
    return home / "cluster" / name


@dataclasses.dataclass
class InstallState:
    path: Path
    steps: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, home: Path, name: str) -> InstallState:
        path = cluster_dir(home, name) / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        return cls(path, dict(data.get("steps", {})), dict(data.get("info", {})))

    def finished(self, step: str, fingerprint: str) -> bool:
        record = self.steps.get(step) or {}
        return record.get("fingerprint") == fingerprint

    def record(self, step: str, fingerprint: str, how: str = "applied") -> None:
        self.steps[step] = {"fingerprint": fingerprint, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                       time.gmtime()), "how": how}
        self.save()

    def forget(self, step: str) -> None:
        self.steps.pop(step, None)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"info": self.info, "steps": self.steps}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)  # atomic: an interrupted write never leaves half a state file
