"""Start model replicas by forking a warm interpreter that has imported kserve once.

Most of a replica's cold start is importing kserve and its runtimes (FastAPI, pandas, numpy,
scikit-learn's base): about 2.5 s of CPU. The *replica fork server* is a warm child of the
server (:mod:`kfbox.server.warm`) that does those imports once, then forks one child per
replica; the child runs :func:`kfbox.serving.replica.main` with the replica's arguments, so
each replica after the first pays only for loading its model and binding its port. Scale-out,
scale-from-zero and a new revision all start this way.

Protocol: for each replica the server sends ``{"argv": [...], "log": path}`` on the fork
server's channel with one end of a fresh socket pair attached (``SCM_RIGHTS``). The fork
server forks; the child starts a session of its own (its pid is its process group, as a
``ChildProcess``'s is), sends its output to the replica's log and runs the replica. On that
socket the fork server answers the child's pid (4 bytes) at once and its exit status (4 bytes,
negative for a signal, as ``Popen.returncode``) once it has reaped it. The replica reads its
own end as its warm channel: the server's end closing (the server stopped, or died by SIGKILL)
ends the replica, as for any replica. The fork server learns of an exited child from SIGCHLD
(a wake-up file descriptor, no polling). At its channel's end of file (the server stopped or died) it
waits for its replicas, which see their own sockets end at the same time, reaps them and exits:
no replica is left for init to reap.

Nothing is forked with threads of Python's running or an event loop made: imports only (the
native threads some libraries start, jemalloc's and OpenBLAS's, handle ``fork`` themselves).
Should an import start a Python thread, the fork server exits with :data:`EXIT_THREADS` instead
of forking (a lock that thread holds would stay held in every replica), and replicas start cold.
Linux only (:func:`supported`): on macOS, system libraries that numpy and friends may load are not
safe to fork after (CPython's multiprocessing starts fresh interpreters there for that reason), and
elsewhere there is no ``fork``; replicas start cold there.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from kfbox.server import warm
from kfbox.server.processes import ChildProcess, kill_group
from kfbox.serving import native_threads

MODULE = "kfbox.serving.forkserver"
PRELOAD = ("kserve.model_server", "kfbox.serving.runtimes", "kfbox.serving.fastpath", "joblib", "sklearn.base")
"""What every replica imports before it loads a model (scikit-learn's base: what a sklearn pickle needs first)."""
_INT = struct.Struct("!i")
EXIT_THREADS = 3
"""The fork server's exit code when its imports started a Python thread: it forks nothing."""
STOP_SECONDS = 5.0
"""How long the fork server waits for its replicas to exit once its channel ends (then SIGKILLs them)."""
UNKNOWN_EXIT = -int(signal.SIGKILL)
"""The status of a replica whose fork server died before reporting it (the replica's socket closed)."""


def supported() -> bool:
    """Whether replicas are forked here: Linux, with the warm channel's Unix sockets."""
    return sys.platform.startswith("linux") and warm.supported()


class ForkedReplica(ChildProcess):
    """A replica forked by the fork server: the same handle as a started process (pid, alive, stop,
    log), its status read from its socket instead of ``waitpid`` (it is the fork server's child)."""

    def __init__(self, pid: int, conn: socket.socket, log_path: Path) -> None:
        super().__init__(popen=None, log_path=log_path)  # type: ignore[arg-type]
        self._pid = pid
        self._conn = conn
        self._status: int | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def alive(self) -> bool:
        return self._poll(0.0) is None

    @property
    def returncode(self) -> int | None:
        return self._poll(0.0)

    def _poll(self, timeout: float) -> int | None:
        with self._lock:
            if self._status is None and _readable(self._conn, timeout):
                data = _read_exactly(self._conn, _INT.size)
                self._status = _INT.unpack(data)[0] if data else UNKNOWN_EXIT
            return self._status

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the replica's group, SIGKILL what is left after ``grace`` seconds; then its socket closes."""
        kill_group(self.pid, signal.SIGTERM)
        if self._poll(grace) is None:
            kill_group(self.pid, signal.SIGKILL)
        code = self._poll(5.0)
        with self._lock:
            self._conn.close()
            if self._status is None:  # closed unreported: never read from the closed socket again
                self._status = UNKNOWN_EXIT
        return code


class ReplicaForkServer:
    """The server's handle on its fork server: :meth:`fork` a replica, :meth:`stop` at the end."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.child = warm.spawn([sys.executable, "-m", MODULE], log_path=log_path, env=env)
        self.forked = 0

    @property
    def alive(self) -> bool:
        return self.child.alive

    def fork(self, args: Sequence[str], log_path: Path, timeout: float,
             env: Mapping[str, str] | None = None) -> ForkedReplica | None:
        """A running replica with these ``kfbox.serving.replica`` arguments, or None when the fork server is gone
        or gives no pid within ``timeout`` seconds (its imports run first: the first fork waits for them)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            sent = self.child.channel.send_with_fd({"argv": list(args), "log": str(log_path), "env": dict(env or {})},
                                                   theirs.fileno())
        pid = _read_exactly(ours, _INT.size) if sent and _readable(ours, timeout) else b""
        if not pid:
            ours.close()
            return None
        self.forked += 1
        return ForkedReplica(_INT.unpack(pid)[0], ours, log_path)

    def stop(self, grace: float = STOP_SECONDS) -> None:
        """Close the channel: the fork server reaps its replicas and exits; SIGKILL after ``grace`` seconds."""
        self.child.channel.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.popen.wait(grace)
        self.child.stop(0)


def _readable(sock: socket.socket, timeout: float) -> bool:
    """``poll``, not ``select``: the server's descriptors may be numbered past select's 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        try:
            chunk = conn.recv(size - len(data))
        except OSError:
            return b""
        if not chunk:
            return b""
        data += chunk
    return data


# --- the fork server's side ----------------------------------------------------------------------
def serve() -> int:
    """Import what replicas need, then fork one child per request until the server's channel ends."""
    channel = warm.inherited_channel()
    if channel is None:
        print(f"{MODULE} needs the channel of a kfbox server (kfbox.server.warm)", file=sys.stderr)
        return 2
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv when imported
    from kfbox.serving.replica import skip_kubernetes_client

    skip_kubernetes_client()
    native_threads.set_defaults()  # numpy, OpenBLAS and libgomp read them as they load, just below
    for module in PRELOAD:
        with contextlib.suppress(ImportError):  # scikit-learn is optional: a replica that needs it says so
            importlib.import_module(module)
    if threading.active_count() > 1:
        names = ", ".join(thread.name for thread in threading.enumerate())
        print(f"not forking replicas: the imports started threads ({names}); replicas start cold", file=sys.stderr)
        return EXIT_THREADS
    gc.freeze()  # what is imported now stays out of the collector: fewer copied pages in each fork
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd is written
    signal.set_wakeup_fd(wake_w.fileno())
    children: dict[int, socket.socket] = {}
    try:
        while True:
            readable = select.select([channel.sock, wake_r], [], [])[0]
            if wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    wake_r.recv(4096)
                _reap(children)
            if channel.sock in readable:
                received = channel.recv_with_fd()
                if received is None:
                    return 0
                request, fd = received
                if fd is not None:
                    _fork(request, socket.socket(fileno=fd), children, (channel.sock, wake_r, wake_w))
    finally:
        _reap_all(children)


def _reap_all(children: dict[int, socket.socket]) -> None:
    """At the end: the replicas exit on their own (their sockets' server ends are closed too); SIGKILL the late."""
    deadline = time.monotonic() + STOP_SECONDS
    while children and time.monotonic() < deadline:
        _reap(children)
        time.sleep(0.05)
    for pid in children:
        kill_group(pid, signal.SIGKILL)
    while children and _reap(children, block=True):
        pass


def _reap(children: dict[int, socket.socket], block: bool = False) -> bool:
    """Collect ended replicas and tell the server each one's exit status; False when none is left to wait for."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        conn = children.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sendall(_INT.pack(os.waitstatus_to_exitcode(status)))
            conn.close()
        if block:
            return True


def _fork(request: dict[str, object], conn: socket.socket, children: dict[int, socket.socket],
          ours: Sequence[socket.socket]) -> None:
    try:
        pid = os.fork()
    except OSError:  # out of processes or memory: the socket's end tells the server, which starts it cold
        conn.close()
        return
    if pid == 0:
        _run_replica(request, conn, [*ours, *children.values()])
    children[pid] = conn
    with contextlib.suppress(OSError):
        conn.sendall(_INT.pack(pid))


def _run_replica(request: dict[str, object], conn: socket.socket, inherited: Sequence[socket.socket]) -> None:
    """In the fork: become the process ``python -m kfbox.serving.replica ARGS`` would have been."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sock in inherited:  # the fork server's channel and the other replicas' sockets are not ours
            sock.close()
        os.setsid()  # its own process group, as ChildProcess.spawn gives: a stop reaches what it starts
        log = os.open(str(request["log"]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        from kfbox.serving.replica import main

        argv = request["argv"]
        assert isinstance(argv, list)
        env = request.get("env") or {}
        assert isinstance(env, dict)
        code = main([str(arg) for arg in argv], warm.Channel(conn), {str(k): str(v) for k, v in env.items()})
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
    except BaseException:  # noqa: BLE001 - whatever happens, the fork must not return into the fork server
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(serve())
