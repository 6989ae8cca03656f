"""Warm child processes: the one handoff mechanism of every interpreter kfbox keeps ready.

A warm child (the spare pipeline worker, the replica fork server) starts ahead of time,
imports what its job needs, then blocks until the server hands it that job. The server and
the child share one connected Unix socket pair, inherited as a file descriptor: no name that
another local user could connect to or squat, nothing to clean up, and no polling. Length-
prefixed JSON messages travel over it::

    server -> child   {"assign": {...}}    once: the job (a run folder)
    child  -> server  {"event": {...}}     any number: news, e.g. "a run's events were appended"

End of file is the other side's death. A warm child exits when the server goes, even by
SIGKILL (no handler runs then): on Linux a parent-death signal (``PR_SET_PDEATHSIG``) also
kills a child whose main thread is busy; elsewhere (macOS) :func:`exit_when_parent_closes`
watches the channel. The server learns at once that a child exited (its channel ends)
instead of polling it.

Where Python has no Unix sockets (Windows), :func:`supported` is False and callers start a
plain child that gets its job on the command line.

Example (server side, then the child)::

    child = spawn([sys.executable, "-m", "kfbox.pipelines.worker", "--spare"], log_path=log)
    child.assign({"run_dir": str(run_dir)})
    # in the child:
    channel = inherited_channel()
    job = channel.recv() if channel else None
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kfbox.server.processes import ChildProcess

ENV_FD = "KFBOX_WARM_FD"
"""The environment variable naming the inherited channel's file descriptor in a warm child."""
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_LENGTH = struct.Struct("!I")


def supported() -> bool:
    """Whether this platform has what a warm child needs (Unix sockets and fd inheritance)."""
    return hasattr(socket, "AF_UNIX") and hasattr(socket, "socketpair") and os.name == "posix"


class Channel:
    """One end of a warm child's socket: whole JSON messages in both directions, thread-safe sends."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()

    def send(self, message: Mapping[str, Any]) -> bool:
        """Send one message; False when the other side is gone."""
        payload = json.dumps(message, default=str).encode()
        try:
            with self._send_lock:
                self.sock.sendall(_LENGTH.pack(len(payload)) + payload)
        except OSError:
            return False
        return True

    def send_with_fd(self, message: Mapping[str, Any], fd: int) -> bool:
        """Send one message with a file descriptor attached (``SCM_RIGHTS``: e.g. a socket for one task's
        answers); False when the other side is gone."""
        payload = json.dumps(message, default=str).encode()
        data = _LENGTH.pack(len(payload)) + payload
        try:
            with self._send_lock:
                sent = socket.send_fds(self.sock, [data], [fd])
                if sent < len(data):
                    self.sock.sendall(data[sent:])
        except OSError:
            return False
        return True

    def recv_with_fd(self) -> tuple[dict[str, Any], int | None] | None:
        """The next message and the descriptor sent with it (None if none), blocking; None at end of file."""
        try:
            first, fds, _flags, _address = socket.recv_fds(self.sock, _LENGTH.size, 1)
        except OSError:
            return None
        if not first:
            return None
        rest = self._read(_LENGTH.size - len(first)) if len(first) < _LENGTH.size else b""
        message = None if rest is None else self._body(first + rest)
        if message is None:
            for fd in fds:
                os.close(fd)
            return None
        return message, (fds[0] if fds else None)

    def recv(self) -> dict[str, Any] | None:
        """The next message, blocking; None once the other side has closed (or died)."""
        header = self._read(_LENGTH.size)
        if header is None:
            return None
        return self._body(header)

    def _body(self, header: bytes) -> dict[str, Any] | None:
        (size,) = _LENGTH.unpack(header)
        if size > MAX_MESSAGE_BYTES:
            self.close()
            return None
        body = self._read(size)
        if body is None:
            return None
        message = json.loads(body)
        return message if isinstance(message, dict) else None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while (message := self.recv()) is not None:
            yield message

    def _read(self, size: int) -> bytes | None:
        data = read_exactly(self.sock, size)
        return data if len(data) == size else None

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``sock``, blocking; empty when the stream ends (or fails) first."""
    data = bytearray()
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except OSError:
            return b""
        if not chunk:
            return b""
        data += chunk
    return bytes(data)


@dataclasses.dataclass
class WarmChild(ChildProcess):
    """A child process (own group, log file) that holds the other end of :attr:`channel`.

    The handle must live as long as the child: dropping it closes the channel, which a warm
    child reads as the server's death.
    """

    channel: Channel = dataclasses.field(default=None)  # type: ignore[assignment]
    assigned: bool = False

    def assign(self, job: Mapping[str, Any]) -> bool:
        """Hand the job over; False when the child is gone (start another way then)."""
        if self.assigned or not self.alive:
            return False
        self.assigned = self.channel.send({"assign": dict(job)})
        return self.assigned

    def events(self, on_event: Callable[[dict[str, Any]], None], on_exit: Callable[[], None]) -> threading.Thread:
        """Call ``on_event`` for each event the child sends and ``on_exit`` once its channel ends, from a
        daemon thread (a blocking read: no polling)."""
        def read() -> None:
            try:
                for message in self.channel:
                    event = message.get("event")
                    if isinstance(event, dict):
                        on_event(event)
            finally:
                on_exit()

        thread = threading.Thread(target=read, name=f"kfbox-warm-{self.pid}", daemon=True)
        thread.start()
        return thread

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM first (a replica drains), then the channel closes."""
        code = super().stop(grace)
        self.channel.close()
        return code


def spawn(argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> WarmChild:
    """Start ``argv`` as a warm child (own process group, output to ``log_path``) holding its channel end."""
    ours, theirs = pair()
    try:
        process = ChildProcess.spawn(argv, log_path=log_path, env=child_env(theirs, env), cwd=cwd,
                                     pass_fds=(theirs.fileno(),))
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()  # the child holds its own copy: our copy would hide the child's death from us
    return WarmChild(popen=process.popen, log_path=process.log_path, channel=ours)


def pair() -> tuple[Channel, socket.socket]:
    """Our channel and the child's socket, for a caller that starts the child itself: pass
    ``theirs.fileno()`` in ``pass_fds`` with :func:`child_env`, then close ``theirs``."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Channel(ours), theirs


def child_env(theirs: socket.socket, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) plus the variable that names the inherited channel."""
    return {**(env if env is not None else os.environ), ENV_FD: str(theirs.fileno())}


def inherited_channel() -> Channel | None:
    """In a warm child: the channel to the server (None when started without one).

    The descriptor is made non-inheritable and its variable removed, so the child's own children
    (pipeline tasks) neither hold the channel open nor see it.
    """
    value = os.environ.pop(ENV_FD, None)
    if value is None:
        return None
    try:
        sock = socket.socket(fileno=int(value))
    except (OSError, ValueError):
        return None
    sock.set_inheritable(False)
    return Channel(sock)


def exit_when_parent_closes(channel: Channel, code: int = 0) -> threading.Thread:
    """A daemon thread that ends this process when the server's end of ``channel`` closes (portable:
    needs no parent-death signal). Only for a channel nothing else reads from."""
    def watch() -> None:
        for _ in channel:  # the server sends nothing after the assignment; drain whatever comes
            pass
        os._exit(code)

    thread = threading.Thread(target=watch, name="kfbox-parent-watch", daemon=True)
    thread.start()
    return thread


class FakeWarmChild(WarmChild):
    """A warm child that is a thread of this process, for tests of a handoff's server side.

    ``target(channel)`` plays the child with a real channel; nothing is imported or spawned,
    so a test sees exactly the messages a real child would get and can answer with events.
    """

    def __init__(self, target: Callable[[Channel], None]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.child_channel = Channel(theirs)
        self.thread = threading.Thread(target=self._run, args=(target,), name="kfbox-fake-warm", daemon=True)
        super().__init__(popen=None, log_path=Path(os.devnull), channel=Channel(ours))  # type: ignore[arg-type]
        self.thread.start()

    def _run(self, target: Callable[[Channel], None]) -> None:
        try:
            target(self.child_channel)
        finally:
            self.child_channel.close()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    @property
    def pid(self) -> int:
        return os.getpid()

    def stop(self, grace: float = 5.0) -> int | None:
        self.channel.close()
        self.thread.join(grace)
        return 0
