"""Start model replicas by forking a warm interpreter that has imported kserve once.

Most of a replica's cold start is importing kserve and its runtimes (FastAPI, pandas, numpy):
about 1 s of CPU without kserve's Kubernetes client (:mod:`kfbox.serving.kserve_import`), and then
its model format's libraries: scikit-learn's base (~1.3 s, most of it scipy.stats, which
``sklearn.utils.fixes`` imports), or torch and transformers for the
``huggingface`` format and kfbox's QA model (~5 s). The *replica fork server* is a warm child of
the server (:mod:`kfbox.server.warm`) that does those imports once, then forks one child per
replica; the child runs :func:`kfbox.serving.replica.main` with the replica's arguments, so
each replica after the first of its kind pays only for loading its model and binding its port.
Scale-out, scale-from-zero and a new revision all start this way. A format's libraries
(:func:`runtime_preload`) are imported at the first fork that needs them, not at start: a server
that serves only LLMs does not import scikit-learn, nor one that serves only iris models torch.

Protocol (:mod:`kfbox.server.forking`): each request is ``{"argv": [...], "log": path, "env": {...}}``; the
child runs the replica in a session of its own, its output in the replica's log. The replica reads its end of the
request's socket as its warm channel: the server's end closing (the server stopped, or died by SIGKILL) ends it, as
for any replica. So at the fork server's end of file its replicas end too; it reaps them and exits.

Nothing is forked with an event loop made: imports only (the native threads some libraries start, jemalloc's and
OpenBLAS's, handle ``fork`` themselves; a Python thread makes the fork server refuse with
:data:`kfbox.server.forking.EXIT_THREADS`, and replicas start cold; one started by a format's libraries
makes it fork nothing from then on, each later replica starting cold).
Linux only (:func:`supported`): on macOS, system libraries that numpy and friends may load are not
safe to fork after (CPython's multiprocessing starts fresh interpreters there for that reason), and
elsewhere there is no ``fork``; replicas start cold there.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from kfbox.server import forking, warm
from kfbox.server.processes import ChildProcess, kill_group
from kfbox.serving import native_threads
from kfbox.serving.kserve_import import defer_kubernetes_client

MODULE = "kfbox.serving.forkserver"
PRELOAD = ("kserve.model_server", "kfbox.serving.runtimes", "kfbox.serving.fastpath")
"""What every replica imports before it loads a model, whatever its format."""
TRANSFORMERS = ("torch", "transformers.modeling_utils", "transformers.models.auto.modeling_auto",
                "transformers.models.auto.tokenization_auto")
"""What loading a transformers model and its tokenizer imports whatever its architecture (~5 s of CPU)."""
FORMAT_PRELOAD: dict[str, tuple[str, ...]] = {
    "sklearn": ("joblib", "sklearn.base"),  # what a sklearn pickle needs first
    "huggingface": ("kfbox.serving.huggingface", *TRANSFORMERS),
}
"""A model format's libraries, imported at the first fork of a replica of that format."""
CLASS_PRELOAD: dict[str, tuple[str, ...]] = {"kfbox.serving.qa:QuestionAnswering": ("kfbox.serving.qa", *TRANSFORMERS)}
"""The same for kfbox's own model classes (``custom`` format); a user's class is never imported here: its code
would then be in every replica forked after it, of every service."""
STOP_SECONDS = 5.0
"""How long the fork server waits for its replicas to exit once its channel ends (then SIGKILLs them)."""


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
        self.channel = warm.Channel(conn)
        """The replica's warm channel (it reads the other end): the hand-off socket goes over it."""
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
            if self._status is None and forking.readable(self._conn, timeout):
                data = warm.read_exactly(self._conn, forking.INT.size)
                self._status = forking.INT.unpack(data)[0] if data else forking.UNKNOWN_EXIT
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
                self._status = forking.UNKNOWN_EXIT
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
        started = forking.request(self.child.channel, {"argv": list(args), "log": str(log_path),
                                                       "env": dict(env or {})}, timeout)
        if started is None:
            return None
        self.forked += 1
        return ForkedReplica(*started, log_path)

    def stop(self, grace: float = STOP_SECONDS) -> None:
        """Close the channel: the fork server reaps its replicas and exits; SIGKILL after ``grace`` seconds."""
        self.child.channel.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.popen.wait(grace)
        self.child.stop(0)


# --- the fork server's side ----------------------------------------------------------------------
def serve() -> int:
    """Import what replicas need, then fork one child per request until the server's channel ends."""
    channel = warm.inherited_channel()
    if channel is None:
        print(f"{MODULE} needs the channel of a kfbox server (kfbox.server.warm)", file=sys.stderr)
        return 2
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv when imported
    defer_kubernetes_client()  # before kserve is imported below
    native_threads.set_defaults()  # numpy, OpenBLAS and libgomp read them as they load, just below
    _import_all(PRELOAD)
    return forking.ForkServer(channel, _run_replica, grace=STOP_SECONDS, terminate=False,
                              prepare=_import_runtime).serve()


def runtime_preload(argv: object) -> tuple[str, ...]:
    """The libraries of the replica's model format (or kfbox model class): the fork server imports them before it
    forks the first replica of its kind, and every later one forks with them loaded."""
    from kfbox.serving.replica import parse_args

    try:
        args = parse_args([str(arg) for arg in argv] if isinstance(argv, list) else [])
    except SystemExit:  # arguments the replica refuses too: it says so in its log
        return ()
    return FORMAT_PRELOAD.get(args.model_format, ()) + CLASS_PRELOAD.get(args.model_class or "", ())


def _import_runtime(request: dict[str, Any]) -> None:
    _import_all(runtime_preload(request.get("argv")))


def _import_all(modules: Sequence[str]) -> None:
    for module in modules:
        # an optional library missing, or one that fails to load: the replica that needs it says so in its log;
        # this process must not end (its replicas would end with it)
        with contextlib.suppress(Exception):
            importlib.import_module(module)


def _run_replica(request: dict[str, Any], conn: socket.socket) -> NoReturn:
    """In the fork: become the process ``python -m kfbox.serving.replica ARGS`` would have been."""
    code = 1
    try:
        forking.become_child(request)
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
