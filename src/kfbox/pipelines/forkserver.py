"""Start pipeline tasks by forking a warm interpreter instead of starting a cold one.

A KFP lightweight component's command is a shell script that writes the component's source
to a file and runs ``python3 -m kfp.dsl.executor_main``. Starting that interpreter costs
about a second for kfp alone, plus whatever the component imports (scikit-learn: about 3 s),
for every task. The *task server* is a single-threaded child of the run worker that imports
kfp's executor once and, on request, the top-level modules of a component's (already
installed) packages. For each task it forks; the fork runs kfp's own ``executor_main`` with
the task's arguments, environment and log file, which is exactly what the script would run.

Only tasks the running interpreter can run (requirements satisfied) and commands of the
standard lightweight shape are forked; anything else starts as a plain subprocess. The
server lives in the worker's process group, so cancelling a run kills it and its tasks.

Protocol: the task server is a warm child of the worker (``kfbox.server.warm``: an inherited
socket pair, no name to connect to and no retry loop). For each task the worker sends one
request on it with one end of a fresh socket pair attached; the forked task answers on that
socket its pid (4 bytes, so the worker can kill it on timeout) at once and its exit code
(4 bytes) when done. A task that dies before answering reads as killed. The server blocks on
its channel: its end of file (the worker is gone) ends it, and every process here also has a
parent-death signal: the task server dies with its worker, a task with the task server.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import importlib
import importlib.metadata
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kfbox.server import forking, warm
from kfbox.server.processes import die_with_parent

EXECUTOR = "kfp.dsl.executor_main"
PRELOAD_MEMORY = ".task-preload.json"
"""In the runs folder: the modules the last run's tasks had their task server import."""
PRELOAD_MAX = 32
_CODE = struct.Struct("!i")


def lightweight_arguments(command: list[str]) -> tuple[str, list[str]] | None:
    """``(component source, executor arguments)`` of a standard lightweight command, else None."""
    for index, part in enumerate(command):
        if f"-m {EXECUTOR}" in part and '"$0"' in part and index + 1 < len(command):
            if index == 0 or command[index - 1] != "-ec":
                return None
            return command[index + 1], list(command[index + 2:])
    return None


def import_names(packages: Iterable[str]) -> list[str]:
    """Top-level modules of installed distributions named by requirement strings (kfp excluded)."""
    from packaging.requirements import InvalidRequirement, Requirement

    names: list[str] = []
    for text in packages:
        try:
            name = Requirement(text).name
        except InvalidRequirement:
            continue
        if name.lower() != "kfp":
            names += _top_level_modules(name)
    return names


@functools.lru_cache(maxsize=256)
def _top_level_modules(dist_name: str) -> list[str]:
    """Read from the distribution's own file list: one lookup, not a scan of every installed package."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return []
    declared = dist.read_text("top_level.txt")
    if declared:
        candidates = set(declared.split())
    else:
        candidates = {f.parts[0] if len(f.parts) > 1 else f.stem for f in dist.files or [] if f.suffix == ".py"}
    return sorted(n for n in candidates if n.isidentifier() and not n.startswith("_"))


def modules_to_preload(source: str, packages: Iterable[str]) -> list[str]:
    """What the component imports from its declared packages: worth importing once, before the fork.

    Only modules of packages the component itself declares are preloaded, so the server never
    imports anything the task would not have imported anyway; imports under a ``try`` that
    catches ImportError are alternatives the task may not take, so they are left to the task --
    except kfbox's own modules tried first (``try: from kfbox.client import ...``): on a kfbox task
    server that branch is the one taken, since kfbox is the server itself.
    """
    packages = list(packages)
    if not packages:
        return []
    declared = set(import_names(packages))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    guarded = [t for t in ast.walk(tree) if isinstance(t, ast.Try) and _catches_import_error(t)]
    optional = {id(n) for t in guarded for n in ast.walk(t)}
    own = {id(n) for t in guarded for part in t.body for n in ast.walk(part)
           if isinstance(n, ast.ImportFrom | ast.Import) and _is_own(n)}
    wanted: list[str] = []
    for node in ast.walk(tree):
        if id(node) in optional and id(node) not in own:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        wanted += [name for name in names if (name.split(".")[0] in declared or id(node) in own)
                   and name not in wanted]
    return wanted


def _is_own(node: ast.Import | ast.ImportFrom) -> bool:
    """An absolute import of kfbox itself."""
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] == "kfbox"
    return all(alias.name.split(".")[0] == "kfbox" for alias in node.names)


def _catches_import_error(node: ast.Try) -> bool:
    names = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    for handler in node.handlers:
        caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if handler.type is None or any(isinstance(c, ast.Name) and c.id in names for c in caught):
            return True
    return False


def remembered_preload(memory: Path) -> list[str]:
    """The modules the last run's tasks had their task server import (see :class:`TaskForker`)."""
    try:
        names = json.loads(memory.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and all(p.isidentifier() for p in n.split("."))][:PRELOAD_MAX]


class TaskForker:
    """The worker's handle on its task server: ``run()`` a task, ``close()`` at the end.

    ``preload``: modules the server imports as it starts, one at a time while no task waits (a spare
    worker's, at idle priority), so the first task that needs them does not wait for them:
    scikit-learn costs a task about 2 s; and a task that does not need them does not wait either. With
    ``memory`` (a file), ``close()`` writes the modules this run's tasks had the server import: the
    next spare imports what the last run used, and nothing for a user who runs no such pipeline.
    """

    def __init__(self, preload: Sequence[str] = (), memory: Path | None = None) -> None:
        self.memory = memory
        self.imported: list[str] = []
        self.channel, theirs = warm.pair()
        try:  # in the worker's process group, writing to its log: not a warm.spawn
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kfbox.pipelines.forkserver", str(os.getpid()), *preload],
                stdin=subprocess.DEVNULL, env=warm.child_env(theirs), pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()

    def normal_priority(self) -> None:
        """A spare's task server starts at idle priority, like its worker; the run it now serves must not wait for
        its preloading on CPU that others leave free (on a busy machine, none): its first task waits for it."""
        if hasattr(os, "sched_setscheduler") and self.process.poll() is None:
            with contextlib.suppress(OSError):
                os.sched_setscheduler(self.process.pid, os.SCHED_OTHER, os.sched_param(0))

    def run(self, command: list[str], env: Mapping[str, str], log_path: Path, packages: Iterable[str]) -> int | None:
        """The task's exit code, or None when the command is not one this server can fork."""
        started = self.start(command, env, log_path, packages, Path(os.getcwd()))
        if started is None:
            return None
        _pid, conn = started
        with conn:
            answer = warm.read_exactly(conn, _CODE.size)
        return _CODE.unpack(answer)[0] if answer else 1

    def start(self, command: list[str], env: Mapping[str, str], log_path: Path, packages: Iterable[str],
              workdir: Path, binds: Mapping[str, str] | None = None) -> tuple[int, socket.socket] | None:
        """Fork the task: ``(pid, connection)`` whose next 4 bytes are its exit code; None when not forkable.

        The component's source goes to ``workdir`` (the task's folder), not to a temporary folder.
        ``binds`` (mount path -> folder) are mounted in the task's own mount namespace (kfbox.pipelines.sandbox).
        """
        parsed = lightweight_arguments(command)
        if parsed is None or self.process.poll() is not None:
            return None
        source, arguments = parsed
        request = {"source": source, "arguments": arguments, "env": dict(env), "log": str(log_path),
                   "cwd": str(workdir), "program_dir": str(workdir),
                   "preload": modules_to_preload(source, packages), "binds": dict(binds or {})}
        conn, task_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with task_end:
            sent = self.channel.send_with_fd(request, task_end.fileno())
        pid = warm.read_exactly(conn, _CODE.size) if sent else b""
        if not pid and self._exited():  # the server died preparing the task (an import that kills its process)
            conn.close()
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"[kfbox] the task server exited with code {self.process.returncode} while importing "
                          f"{request['preload']}; this task and the next start as fresh processes\n")
            return None
        self.imported += [m for m in request["preload"] if m not in self.imported]
        return (_CODE.unpack(pid)[0] if pid else -1), conn  # -1: died at once; its exit code reads as missing

    def _exited(self, wait: float = 2.0) -> bool:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(wait)
        return self.process.poll() is not None

    def close(self) -> None:
        self.channel.close()  # the server's end of file: it reaps its last tasks and exits
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        if self.process.poll() is None:
            self.process.kill()
        if self.memory is not None and self.imported:
            with contextlib.suppress(OSError):
                partial = self.memory.with_name(self.memory.name + f".{os.getpid()}")
                partial.write_text(json.dumps(self.imported[:PRELOAD_MAX]))
                partial.replace(self.memory)


def serve(worker: int | None = None, preload: Sequence[str] = ()) -> None:
    """The task server's loop: read a request, import what is asked, fork, repeat until the worker goes."""
    die_with_parent()
    channel = warm.inherited_channel()
    if channel is None:
        print("the task server needs its worker's channel (kfbox.server.warm)", file=sys.stderr)
        return
    parent = os.getppid()
    if worker is not None and parent != worker:  # the worker died before the signal was armed
        return
    # Not the folder it started in: a spare worker's folder is deleted at hand-over, and importing torch
    # with a deleted working directory kills the process (oneMKL: "Cannot load libtorch_cpu.so", exit 2).
    # Each task changes to its own folder after the fork.
    os.chdir("/")
    # As in a task pod (the compiled command sets it too): kfp then imports its runtime only, not kfp.client
    # and the kubernetes client behind it -- 45 ms and 8 MB instead of 2.4 s and 80 MB, and a fork copies less.
    os.environ["_KFP_RUNTIME"] = "true"
    importlib.import_module(EXECUTOR)
    _warm_executor()
    signal.signal(signal.SIGTERM, _exit_on_signal)  # the worker's close(): reap the last tasks, then go
    gc.freeze()  # what is imported now stays out of the collector: fewer copied pages in each fork
    try:
        _request_loop(channel, list(preload))
    finally:
        _reap()


def _import_all(modules: Iterable[str]) -> None:
    for module in modules:
        with contextlib.suppress(Exception):  # a module that fails here fails visibly in the task
            importlib.import_module(module)
    gc.freeze()


def _warm_executor() -> None:
    """Do once here what ``executor_main`` does first in every task, so each fork inherits it: its argparse
    parser's messages go through gettext, which imports ``locale`` and compiles regular expressions --
    about a third of a trivial task's CPU (11.5 -> 7.5 ms per forked task, measured)."""
    import argparse

    parser = argparse.ArgumentParser(description="KFP Component Executor.")
    parser.add_argument("--component_module_path", type=str)
    parser.add_argument("--function_to_execute", type=str, required=True)
    parser.add_argument("--executor_input", type=str)
    parser.parse_known_args(["--function_to_execute", "f", "--executor_input", "{}"])


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _reap() -> None:
    """Collect ended tasks: no zombies, and their CPU time counts in this server's (so the run's) rusage."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _request_loop(channel: warm.Channel, idle: list[str]) -> None:
    """Serve requests; import the ``idle`` modules (remembered from earlier runs) one at a time while none
    waits, so a task never waits for modules it does not import (iris's model selection: boto3 and the
    kubernetes client, ~2 s of CPU, are for the two tasks after it)."""
    while True:
        while idle and not select.select([channel.sock], [], [], 0)[0]:
            _import_all([idle.pop(0)])
        received = channel.recv_with_fd()
        if received is None:
            return
        _reap()
        request, fd = received
        if fd is None:
            continue
        conn = socket.socket(fileno=fd)
        _normal_priority()  # a spare worker starts this server at idle priority; tasks run at normal
        _import_all(request["preload"])
        if os.fork() == 0:
            channel.sock.close()  # a task must not hold its server's channel open
            with contextlib.suppress(OSError):  # the pid first, from the task itself: ordered before its exit code
                conn.sendall(_CODE.pack(os.getpid()))
            _run_task(conn, request)
        conn.close()


def _normal_priority() -> None:
    if hasattr(os, "sched_setscheduler"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _run_task(conn: socket.socket, request: dict[str, Any]) -> None:
    """In the fork: become the task process that kfp's shell script would have started."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        die_with_parent()  # the task server is the parent: it dies with the worker, which dies with the server
        forking.become_child(request, session=False)  # in the worker's group: cancelling a run kills its tasks
        if request.get("binds"):
            from kfbox.pipelines import sandbox

            sandbox.enter(request["binds"], Path(request["cwd"]))
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["_KFP_RUNTIME"] = "true"
        program = Path(request.get("program_dir") or tempfile.mkdtemp()) / "ephemeral_component.py"
        program.write_text(request["source"])
        sys.argv = [EXECUTOR, "--component_module_path", str(program), *request["arguments"]]
        code = _run_executor()
    except BaseException:  # noqa: BLE001 - whatever happens, the worker must get an exit code
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            conn.sendall(_CODE.pack(code))
        os._exit(code)


def _run_executor() -> int:
    executor = importlib.import_module(EXECUTOR)
    try:
        executor.executor_main()
    except SystemExit as exit_:
        if exit_.code is None:
            return 0
        return exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - the component's exception, printed as python would
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else None, sys.argv[2:])
