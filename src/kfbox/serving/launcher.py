"""Starts replica processes, from a warm standby when one is waiting.

Most of a replica's start is importing kserve (FastAPI, pandas, numpy...). The launcher keeps
one standby process that has done those imports and waits for its arguments
(``python -m kfbox.serving.replica --standby``, a warm child of :mod:`kfbox.server.warm`);
launching a replica hands them over on the standby's channel, so a scale-up or a scale-from-zero
pays only for loading the model. The next standby starts on :meth:`ReplicaLauncher.refill`, which
the manager calls once no replica is starting: its imports (~3 s of CPU) would otherwise compete
with the replica that is being waited for. The standby's log is renamed to
the replica's log when it is assigned. Every replica holds a warm channel, so it exits with the
server; where there are none (no Unix sockets) replicas start cold.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from kfbox.server import warm as warm_children
from kfbox.server.processes import ChildProcess
from kfbox.serving.replica import STANDBY_FLAG

MODULE = "kfbox.serving.replica"


def replica_env() -> dict[str, str]:
    """The server's environment without KFBOX_* (no tokens or keys reach user code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ReplicaLauncher:
    def __init__(self, folder: Path, warm: bool = True) -> None:
        self.folder = folder
        self.warm = warm and warm_children.supported()
        self.env = replica_env()
        self._standby: warm_children.WarmChild | None = None
        self._used = False  # a replica was launched: a standby is worth keeping from now on
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()  # launch() runs in worker threads
        shutil.rmtree(folder, ignore_errors=True)  # standby logs of an earlier server run

    def launch(self, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> ChildProcess:
        """A running replica process with these ``kfbox.serving.replica`` arguments and, over the
        server's environment, ``env`` (the InferenceService's ``env``: at spawn, or with the arguments)."""
        env = dict(env or {})
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            standby, self._standby = self._standby, None
            child: ChildProcess | None = None
            if standby is not None and standby.alive:
                standby_log = standby.log_path
                os.replace(standby_log, log_path)  # the process keeps writing to the same file
                standby.log_path = log_path
                if standby.assign({"argv": list(args), "env": env}):
                    child = standby
                else:  # it died just now: its log stays where it was
                    os.replace(log_path, standby_log)
            if child is None:
                if standby is not None:
                    standby.stop(0)
                child = self._cold(args, log_path, env)
            self._used = True
            return child

    @property
    def wants_standby(self) -> bool:
        """A replica was launched and no standby waits for the next one."""
        return self.warm and self._used and self._standby is None

    def refill(self) -> None:
        """Start the next standby if one is wanted (call when no replica is starting)."""
        with self._lock:
            if self.wants_standby:
                self._standby = self._spawn_standby()

    def _cold(self, args: Sequence[str], log_path: Path, env: Mapping[str, str]) -> ChildProcess:
        argv = [sys.executable, "-m", MODULE, *args]
        child_env = {**self.env, **env}
        if warm_children.supported():  # a channel all the same: the replica exits with the server
            return warm_children.spawn(argv, log_path=log_path, env=child_env)
        return ChildProcess.spawn(argv, log_path=log_path, env=child_env)

    def _spawn_standby(self) -> warm_children.WarmChild:
        log_path = self.folder / f"standby-{next(self._numbers)}.log"
        return warm_children.spawn([sys.executable, "-m", MODULE, STANDBY_FLAG], log_path=log_path, env=self.env)

    def children(self) -> list[ChildProcess]:
        return [self._standby] if self._standby is not None else []

    def close(self) -> None:
        with self._lock:
            standby, self._standby = self._standby, None
        if standby is not None:
            standby.stop(0)
        shutil.rmtree(self.folder, ignore_errors=True)

