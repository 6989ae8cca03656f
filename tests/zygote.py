"""The suite's ``kfbox up`` servers, forked from one warm interpreter instead of each importing kfbox cold.

A cold ``python -m kfbox up`` spends ~1.3 s of CPU importing (the CLI, the server, then FastAPI and pydantic,
which a server preloads once it is up) before its own start-up work (~0.3 s); the suite starts dozens of
servers. The *zygote* is one child of the pytest process that does those imports once, then forks one child
per server; the child becomes the process ``python -m kfbox up ARGS`` would have been (own session, the
caller's environment, working directory and log file, ``sys.argv``, process title) and runs the same entry
point, ``kfbox.cli.main.main``, returning through the zygote's ``__main__`` so the interpreter exits as the
cold one does (atexit hooks, non-daemon threads). This is kfbox's own replica fork server
(:mod:`kfbox.serving.forkserver`) applied to the server, with kfbox's fork-server loop (:mod:`kfbox.server.forking`)
over its warm-child channel: what a server does from ``main()`` on is unchanged and real.

What a fork does not cover, tests cover cold: the imports a start makes (tests/server/test_start_imports.py),
the CLI as a process (tests/cli). ``KFBOX_TEST_COLD_SERVERS=1`` in pytest's environment starts every server
cold, as before; ``ServerProcess.start(..., cold=True)`` one server.

Protocol (:mod:`kfbox.server.forking`): each request is ``{"argv", "env", "cwd", "log"}``; the zygote reports a
reaped server's exit status and CPU seconds (user + system, with its waited-for children's: ``wait4``). At its
channel's end of file (the pytest process ended or died) it SIGTERMs its servers' process groups, SIGKILLs what is
left after a grace period, reaps them and exits.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PRELOAD = ("kfbox.cli.main", "kfbox.server.runner", "kfbox.db.migrate", "fastapi.routing", "pydantic",
           "kfbox.pipelines.api", "kfbox.serving.router", "kfbox.ui.render")
"""What ``kfbox up`` imports before it is ready (with each subsystem of kfbox.server.app.SUBSYSTEMS), what
kfbox.server.runner._preload imports once it is, then what the first request under the KFP, KServe and dashboard
paths imports. Imports only: every server still builds its own app, database and routes in its fork."""
_EXIT = struct.Struct("!id")
"""A reaped server's exit status and CPU seconds."""
STOP_SECONDS = 10.0

forked_cpu = 0.0
"""CPU seconds of the forked servers reaped so far (benchmarks/suite_cpu.py adds them to a module's children:
they are the zygote's children, not pytest's, so ``RUSAGE_CHILDREN`` would not see them until the zygote ends)."""


# --- the pytest side ---------------------------------------------------------------------------------------
class ForkedServer:
    """The ``subprocess.Popen`` surface tests use (pid, poll, wait, send_signal, kill, returncode), for a
    server the zygote forked: its exit status comes from the zygote on a socket (no polling)."""

    def __init__(self, pid: int, conn: socket.socket, zygote: Zygote) -> None:
        self.pid = pid
        self._zygote = zygote
        self.returncode: int | None = None
        self._conn = conn

    def poll(self) -> int | None:
        return self._collect(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._collect(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(["kfbox", "up"], timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _collect(self, timeout: float | None) -> int | None:
        global forked_cpu
        from kfbox.server import forking, warm

        if self.returncode is not None:
            return self.returncode
        if not forking.readable(self._conn, timeout):
            return None
        data = warm.read_exactly(self._conn, _EXIT.size)
        self._conn.close()
        if not data:
            self.returncode = forking.UNKNOWN_EXIT  # the zygote died before reporting it
        else:
            self.returncode, cpu = _EXIT.unpack(data)
            forked_cpu += cpu
            self._zygote.reported += cpu
        return self.returncode


class Zygote:
    """The warm interpreter, started on first use by :func:`fork`."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        from kfbox.server import warm

        env = {k: v for k, v in env.items() if not k.startswith("KFBOX_")}
        self.interpreter = _interpreter_settings(env)
        self.channel, theirs = warm.pair()
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, __file__], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=warm.child_env(theirs, env),
                                            pass_fds=(theirs.fileno(),), start_new_session=True)
        theirs.close()
        self.reported = 0.0

    def fork(self, argv: Sequence[str], env: dict[str, str], log: Path) -> ForkedServer | None:
        """A server forked from the zygote; None when the zygote cannot fork or ``env`` would start a different
        interpreter (PYTHONPATH and the like, read before any import: the caller starts that one cold)."""
        from kfbox.server import forking

        if _interpreter_settings(env) != self.interpreter:
            return None
        started = forking.request(self.channel, {"argv": list(argv), "env": env, "cwd": os.getcwd(),
                                                 "log": str(log)})  # waits while the zygote imports, the first time
        return None if started is None else ForkedServer(*started, self)

    def stop(self) -> int:
        global forked_cpu
        self.channel.close()
        try:
            code = self.process.wait(STOP_SECONDS + 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        # the zygote's own CPU now includes its reaped servers' (RUSAGE_CHILDREN), already in forked_cpu
        forked_cpu -= self.reported
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size == 0:  # nothing to say: no file left behind
                self.log_path.unlink()
        return code


_zygote: Zygote | None = None
_failed = False


def fork(argv: Sequence[str], env: dict[str, str], log: Path) -> ForkedServer | None:
    """``python -m kfbox ARGV`` with ``env``, output appended to ``log``, forked from this process's zygote;
    None where the caller is to start it cold (then always, once the zygote has failed: its log says why)."""
    global _zygote, _failed
    if _failed:
        return None
    if _zygote is None:
        _zygote = Zygote(Path(tempfile.gettempdir()) / f"kfbox-test-zygote-{os.getpid()}.log", env)
    server = _zygote.fork(argv, env, log)
    if server is None and _zygote.process.poll() is not None:
        _failed = True
        stop()
    return server


def _interpreter_settings(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


def stop() -> None:
    """Stop the zygote (at the session's end: its CPU is then charged to the last module, as a server's is)."""
    global _zygote
    if _zygote is not None:
        _zygote.stop()
        _zygote = None


# --- the zygote's side -------------------------------------------------------------------------------------
def serve() -> int:
    """Import what a server needs, then fork one server per request until the channel ends; in a fork, run it."""
    from kfbox.server import forking, warm

    channel = warm.inherited_channel()
    if channel is None:
        print("tests/zygote.py runs as the child of tests.zygote.Zygote", file=sys.stderr)
        return 2
    sys.path[0] = os.getcwd()  # as `python -m`, not this file's folder (tests/: its packages would shadow)
    gc.disable()  # as `kfbox up` imports: see kfbox.cli.server.up
    for module in PRELOAD:
        importlib.import_module(module)
    from kfbox.server.app import SUBSYSTEMS

    for module in SUBSYSTEMS:
        importlib.import_module(module)
    return forking.ForkServer(channel, _become_server, report=_exit_and_cpu, grace=STOP_SECONDS).serve()


def _become_server(request: dict[str, Any], conn: socket.socket) -> int:
    """In the fork: set up what ``python -m kfbox up`` would have had, then run kfbox's CLI entry point."""
    from kfbox.server import forking

    conn.close()  # the zygote reports this server's exit on it: nothing for the server
    forking.become_child(request)  # own session, as ServerProcess's start_new_session; cwd; log
    env = request["env"]
    argv = request["argv"]
    assert isinstance(env, dict) and isinstance(argv, list)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    import kfbox

    entry = str(Path(kfbox.__file__).with_name("__main__.py"))
    sys.argv = [entry, *map(str, argv)]  # as `python -m kfbox ARGV` sets them
    sys.path[0] = os.getcwd()  # the server's working directory, not the zygote's
    with contextlib.suppress(ImportError):
        from setproctitle import setproctitle

        setproctitle(" ".join([sys.executable, "-m", "kfbox", *map(str, argv)]))
    from kfbox.cli.main import main

    main()  # SystemExit goes up through serve() and ends this interpreter, as `python -m kfbox` ends
    return 0


def _exit_and_cpu(_pid: int, status: int, usage: resource.struct_rusage) -> bytes:
    """The exit status and CPU seconds (``benchmarks/suite_cpu.py`` counts them: see :data:`forked_cpu`)."""
    return _EXIT.pack(os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime)


if __name__ == "__main__":
    sys.exit(serve())
