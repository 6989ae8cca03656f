"""Starts replica processes, forked from the replica fork server where the platform allows.

Most of a replica's start is importing kserve (FastAPI, pandas, numpy...). The launcher starts
one fork server (:mod:`kfbox.serving.forkserver`, a warm child of :mod:`kfbox.server.warm`) at
the first replica launch; it imports kserve once and forks every replica from then on, so a
scale-up, a scale-from-zero or a new revision pays only for loading the model. The first
replica waits for those imports, as a cold start would. Nothing is started for a server that
never serves a model. A fork server that died is started again at the next launch, unless it
never forked a replica (it refused, e.g. :data:`kfbox.server.forking.EXIT_THREADS`): replicas
then start cold for the rest of the server's life.

Every replica holds a warm channel, so it exits with the server. Off Linux (see
:func:`kfbox.serving.forkserver.supported`), or with ``warm=False`` (``KFBOX_SERVING_WARM_STANDBY=0``),
replicas start cold: a fresh ``python -m kfbox.serving.replica`` each.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from kfbox.server import warm as warm_children
from kfbox.server.processes import ChildProcess
from kfbox.serving import forkserver

log = logging.getLogger(__name__)
MODULE = "kfbox.serving.replica"
FORK_TIMEOUT_SECONDS = 120.0
"""How long a launch waits for the fork server's pid (the first waits for its imports); then it starts cold."""


def replica_env() -> dict[str, str]:
    """The server's environment without KFBOX_* (no tokens or keys reach user code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ReplicaLauncher:
    def __init__(self, folder: Path, warm: bool = True) -> None:
        self.folder = folder
        self.warm = warm and forkserver.supported()
        self.env = replica_env()
        self._forker: forkserver.ReplicaForkServer | None = None
        self._lock = threading.Lock()  # launch() runs in worker threads
        shutil.rmtree(folder, ignore_errors=True)  # the fork server's log of an earlier server run

    def launch(self, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> ChildProcess:
        """A running replica process with these ``kfbox.serving.replica`` arguments, writing to ``log_path``,
        with ``env`` (the InferenceService's ``env``) over the server's environment."""
        env = dict(env or {})
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
        forker = self._fork_server()
        if forker is not None:
            child = forker.fork(args, log_path, FORK_TIMEOUT_SECONDS, env)
            if child is not None:
                return child
            if not forker.forked:  # refused or too slow: not worth a kserve import at every launch
                log.warning("the replica fork server forked nothing (see %s): replicas start cold from now on",
                            forker.child.log_path)
                self.warm = False
                with self._lock:
                    self._forker = None
                forker.stop()
        return self._cold(args, log_path, env)

    def _fork_server(self) -> forkserver.ReplicaForkServer | None:
        if not self.warm:
            return None
        with self._lock:
            if self._forker is not None and not self._forker.alive:
                self._forker.stop()
                self._forker = None
            if self._forker is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._forker = forkserver.ReplicaForkServer(self.folder / "forkserver.log", self.env)
            return self._forker

    def _cold(self, args: Sequence[str], log_path: Path, env: Mapping[str, str]) -> ChildProcess:
        argv = [sys.executable, "-m", MODULE, *args]
        child_env = {**self.env, **env}
        if warm_children.supported():  # a channel all the same: the replica exits with the server
            return warm_children.spawn(argv, log_path=log_path, env=child_env)
        return ChildProcess.spawn(argv, log_path=log_path, env=child_env)

    @property
    def fork_server(self) -> ChildProcess | None:
        """The fork server's process, once a replica was launched (replicas are their pools' children)."""
        forker = self._forker
        return forker.child if forker is not None else None

    def close(self) -> None:
        with self._lock:
            forker, self._forker = self._forker, None
        if forker is not None:
            forker.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
