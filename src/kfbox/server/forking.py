"""Fork servers: a warm interpreter that forks one child per request instead of each child importing cold.

The replica fork server (:mod:`kfbox.serving.forkserver`) and the test suite's server zygote (tests/zygote.py)
are warm children (:mod:`kfbox.server.warm`) that import what their children need once, then run this loop.

Protocol, over the warm channel: each request is one JSON message with one end of a fresh socket pair attached
(``SCM_RIGHTS``; :func:`request` sends it). :class:`ForkServer` forks; the child runs the server's callback with
the request and that socket. On the socket the fork server answers the child's pid (4 bytes) at once and, once
it has reaped the child, what its ``report`` makes of the exit (by default the exit status, 4 bytes, negative for
a signal, as ``Popen.returncode``). The fork server learns of an exited child from SIGCHLD (a wake-up file
descriptor, no polling). At its channel's end of file (its parent stopped or died) it stops its children, reaps
them and exits: none is left for init to reap.

Nothing is forked with a Python thread running (a lock that thread holds would stay held in every child): the
server exits with :data:`EXIT_THREADS` instead, and its parent starts children cold.

Example (the fork server's module)::

    def run_child(request: dict[str, Any], conn: socket.socket) -> int:
        become_child(request)  # own session, output to request["log"]
        ...

    channel = warm.inherited_channel()
    sys.exit(ForkServer(channel, run_child).serve())
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kfbox.server import warm
from kfbox.server.processes import kill_group

EXIT_THREADS = 3
"""A fork server's exit code when its imports started a Python thread: it forks nothing."""
UNKNOWN_EXIT = -int(signal.SIGKILL)
"""The status of a child whose fork server died before reporting it (the child's socket closed)."""
INT = struct.Struct("!i")
"""A pid or an exit status on a child's socket."""

Report = Callable[[int, int, resource.struct_rusage], bytes]
"""``(pid, wait status, rusage) -> bytes``: what a fork server sends on a reaped child's socket."""
RunChild = Callable[[dict[str, Any], socket.socket], int]
"""In the fork: ``(request, socket)`` -> what :meth:`ForkServer.serve` returns there (or never returns)."""
Prepare = Callable[[dict[str, Any]], None]
"""Before a request's fork, in the fork server: ``(request) -> None``, e.g. import what that kind of child needs,
once, so that every later child of its kind inherits it."""


def exit_status(_pid: int, status: int, _usage: resource.struct_rusage) -> bytes:
    """The default report: the exit status, as ``Popen.returncode`` (negative for a signal)."""
    return INT.pack(os.waitstatus_to_exitcode(status))


class ForkServer:
    """The fork server's loop over its warm channel and the children it forked.

    ``grace``: at the end, how long children have to exit before they are SIGKILLed. ``terminate``: SIGTERM
    their process groups first (servers drain on it); without, they are expected to end on their own as their
    sockets close (a replica's warm channel is its socket). ``prepare``: run before each fork; should it start a
    Python thread, that request and every later one are refused (their parent starts them cold), the children
    forked before staying.
    """

    def __init__(
        self,
        channel: warm.Channel,
        run_child: RunChild,
        *,
        report: Report = exit_status,
        grace: float = 5.0,
        terminate: bool = True,
        prepare: Prepare | None = None,
    ) -> None:
        self.channel = channel
        self.run_child = run_child
        self.report = report
        self.grace = grace
        self.terminate = terminate
        self.prepare = prepare
        self.refusing = False
        self.children: dict[int, socket.socket] = {}

    def serve(self) -> int:
        """Fork one child per request until the channel ends, then stop the children: 0 here. In a child: what
        ``run_child`` returns (exceptions too go up, the children then left alone: they are not its own)."""
        if threading.active_count() > 1:
            names = ", ".join(thread.name for thread in threading.enumerate())
            print(f"not forking: the imports started threads ({names}); children start cold", file=sys.stderr)
            return EXIT_THREADS
        gc.freeze()  # what is imported now stays out of the collector: fewer copied pages in each fork
        sys.stdout.flush()  # not written again by each child
        sys.stderr.flush()
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd is written
        signal.set_wakeup_fd(wake_w.fileno())
        forked = False
        try:
            while True:
                ready = select.select([self.channel.sock, wake_r], [], [])[0]
                if wake_r in ready:
                    with contextlib.suppress(BlockingIOError):
                        wake_r.recv(4096)
                    self.reap()
                if self.channel.sock not in ready:
                    continue
                received = self.channel.recv_with_fd()
                if received is None:
                    return 0
                request, fd = received
                if fd is None:
                    continue
                conn = socket.socket(fileno=fd)
                if not self._prepared(request):
                    conn.close()  # its end tells the parent, which starts it cold
                    continue
                try:
                    pid = os.fork()
                except OSError:  # out of processes or memory: the socket's end tells the parent, which starts it cold
                    conn.close()
                    continue
                if pid == 0:
                    forked = True
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    for sock in (self.channel.sock, wake_r, wake_w, *self.children.values()):
                        sock.close()  # the fork server's channel and the other children's sockets are not ours
                    return self.run_child(request, conn)
                self.children[pid] = conn
                with contextlib.suppress(OSError):
                    conn.sendall(INT.pack(pid))
        finally:
            if not forked:
                self.stop()

    def _prepared(self, request: dict[str, Any]) -> bool:
        """``prepare`` ran for the request and no Python thread is running: it may fork."""
        if self.prepare is None:
            return True
        if not self.refusing:
            self.prepare(request)
            if threading.active_count() > 1:
                names = ", ".join(thread.name for thread in threading.enumerate())
                print(f"forking no more: preparing a child started threads ({names}); children start cold",
                      file=sys.stderr, flush=True)
                self.refusing = True
            gc.freeze()  # what it imported stays out of the collector too
        return not self.refusing

    def reap(self, block: bool = False) -> bool:
        """Collect ended children and report each one on its socket; False when none is left to wait for."""
        while True:
            try:
                pid, status, usage = os.wait4(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            conn = self.children.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(self.report(pid, status, usage))
                conn.close()
            if block:
                return True

    def stop(self) -> None:
        """SIGTERM the children's groups (with ``terminate``), SIGKILL what is left after the grace, reap all."""
        if self.terminate:
            for pid in self.children:
                kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self.children and time.monotonic() < deadline and self.reap():
            time.sleep(0.05)
        for pid in self.children:
            kill_group(pid, signal.SIGKILL)
        while self.children and self.reap(block=True):
            pass


def become_child(request: Mapping[str, Any], session: bool = True) -> None:
    """In the fork: what a started process would have had. Output appended to ``request["log"]`` (so what fails
    next lands there), no input, the working directory ``request["cwd"]`` if given; with ``session``, a session of
    its own (its pid is its process group, as ``ChildProcess.spawn`` gives: a stop reaches what it starts)."""
    if session:
        os.setsid()
    log = os.open(str(request["log"]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if request.get("cwd"):
        os.chdir(str(request["cwd"]))


# --- the parent's side ---------------------------------------------------------------------------------------
def request(
    channel: warm.Channel, message: Mapping[str, Any], timeout: float | None = None
) -> tuple[int, socket.socket] | None:
    """Ask the fork server at ``channel``'s other end for a child: its pid and the socket its report will come
    on; None when the server is gone or gives no pid within ``timeout`` seconds (its imports run first: the first
    request waits for them)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with theirs:
        sent = channel.send_with_fd(message, theirs.fileno())
    pid = warm.read_exactly(ours, INT.size) if sent and readable(ours, timeout) else b""
    if not pid:
        ours.close()
        return None
    return INT.unpack(pid)[0], ours


def readable(sock: socket.socket, timeout: float | None) -> bool:
    """Whether ``sock`` has data (or its end) within ``timeout`` seconds (None: waits). ``poll``, not ``select``:
    a server's descriptors may be numbered past select's 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(None if timeout is None else timeout * 1000))
