"""Starts replica processes, from a warm standby when one is waiting.

Most of a replica's start is importing kserve (FastAPI, pandas, numpy...). The launcher keeps
one standby process that has done those imports and waits for its arguments
(``python -m kfbox.serving.replica --standby FOLDER``); launching a replica hands them over
and starts the next standby, so a scale-up or a scale-from-zero pays only for loading the
model. The standby's log is renamed to the replica's log when it is assigned.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from kfbox.server.processes import ChildProcess
from kfbox.serving.replica import ASSIGNMENT, STANDBY_FLAG

MODULE = "kfbox.serving.replica"


def replica_env() -> dict[str, str]:
    """The server's environment without KFBOX_* (no tokens or keys reach user code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ReplicaLauncher:
    def __init__(self, folder: Path, warm: bool = True) -> None:
        self.folder = folder
        self.warm = warm
        self.env = replica_env()
        self._standby: tuple[ChildProcess, Path] | None = None
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()  # launch() runs in worker threads
        shutil.rmtree(folder, ignore_errors=True)  # standbys of an earlier server run

    def launch(self, args: Sequence[str], log_path: Path) -> ChildProcess:
        """A running replica process with these ``kfbox.serving.replica`` arguments."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            standby, self._standby = self._standby, None
            if standby is not None and standby[0].alive:
                child, folder = standby
                os.replace(child.log_path, log_path)  # the process keeps writing to the same file
                child.log_path = log_path
                staging = folder / (ASSIGNMENT + ".tmp")
                staging.write_text(json.dumps(list(args)))
                os.replace(staging, folder / ASSIGNMENT)
            else:
                if standby is not None:
                    standby[0].stop(0)
                child = ChildProcess.spawn([sys.executable, "-m", MODULE, *args], log_path=log_path, env=self.env)
            if self.warm:
                self._standby = self._spawn_standby()
            return child

    def _spawn_standby(self) -> tuple[ChildProcess, Path]:
        folder = self.folder / f"standby-{next(self._numbers)}"
        folder.mkdir(parents=True, exist_ok=True)
        child = ChildProcess.spawn([sys.executable, "-m", MODULE, STANDBY_FLAG, str(folder)],
                                   log_path=folder / "standby.log", env=self.env)
        return child, folder

    def children(self) -> list[ChildProcess]:
        return [self._standby[0]] if self._standby is not None else []

    def close(self) -> None:
        with self._lock:
            standby, self._standby = self._standby, None
        if standby is not None:
            standby[0].stop(0)
        shutil.rmtree(self.folder, ignore_errors=True)
