"""Child processes the server supervises: pipeline runs and model replicas.

Each child gets its own process group (so a kill reaches its grandchildren), writes
stdout and stderr to a log file, and is stopped with SIGTERM then SIGKILL.

Example::

    child = ChildProcess.spawn([sys.executable, "-m", "x"], log_path=home / "x.log")
    child.stop(grace=5)
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


@dataclasses.dataclass
class ChildProcess:
    popen: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def spawn(cls, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
              cwd: Path | None = None, pass_fds: Sequence[int] = (), die_with_parent: bool = False) -> ChildProcess:
        """``die_with_parent``: Linux's ``PR_SET_PDEATHSIG``, so a SIGKILLed server takes the child with it (a tool
        such as Prometheus or HAProxy, which knows nothing of kfbox). The signal follows the spawning *thread*:
        spawn such a child from the event loop's thread, never from a worker thread."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=dict(env) if env is not None else None, cwd=cwd,
                                     start_new_session=True, pass_fds=tuple(pass_fds),
                                     preexec_fn=_die_on_sigterm if die_with_parent else None)
        return cls(popen=popen, log_path=log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the whole group, SIGKILL what is left after ``grace`` seconds."""
        kill_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_group(self.pid, signal.SIGKILL)  # also reaches grandchildren that outlived the leader
        try:
            return self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None


def kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Linux: have the kernel send ``sig`` to this process when its parent dies (no orphan after a
    ``kill -9`` of the server). A no-op elsewhere. Safe in a ``preexec_fn``: it imports nothing."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _die_on_sigterm() -> None:
    die_with_parent(signal.SIGTERM)  # a tool's own clean stop (Prometheus flushes, HAProxy stops its workers)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_proc(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of a live process from ``/proc``; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()  # the name may hold spaces and parentheses
    utime, stime, rss_pages = int(fields[11]), int(fields[12]), int(fields[21])
    return (utime + stime) / _TICKS, rss_pages * _PAGE
