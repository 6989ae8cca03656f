"""One model replica: ``python -m kfbox.serving.replica ...`` runs the upstream kserve ModelServer.

Two things of kserve must not leak in: ``kserve.model_server`` parses ``sys.argv`` when it is
imported, so our own flags are parsed first and ``sys.argv`` is emptied before the import;
and it binds 0.0.0.0 (REST) and ``[::]`` (gRPC), so both are pointed at 127.0.0.1.
A model that fails to load prints one ``KFBOX_REPLICA_FAILED:`` line (the reason the server
shows in ``kfbox serve get``) and exits with :data:`EXIT_LOAD_FAILED`.

Replicas are usually forked from the replica fork server (:mod:`kfbox.serving.forkserver`), which
has imported kserve and the runtimes once, so a start pays only for loading the model and binding
the port. Every replica the server starts holds a warm channel (``kfbox.server.warm``) and exits
when the server's end closes.

Per-request log lines are off (:func:`log_config`): kserve's default configuration writes three
for every request (uvicorn's access line and two ``kserve.trace`` timing lines), about 300 bytes
and three writes a request in the replica's log file, 150 kB/s at 500 req/s. Startup, model and
error lines stay; the gateway counts every request in ``kfbox_serving_*``. It is kserve's own
logging configuration with two levels raised, what a stock server gets from
``--log_config_file`` (``benchmarks/gateway.py`` runs its stock peer so, like for like). The
middleware that timed each request for those trace lines is left out too.

V1 predictions and V2 inferences of kfbox's own runtimes take a lean route (:mod:`kfbox.serving.fastpath`)
in front of kserve's app, and scikit-learn models predict through :mod:`kfbox.serving.sklearn_calls`:
together 4.66 -> 1.31 M instructions per iris V1 request, and the route 2.55 -> 1.28 M per V2 request
(``benchmarks/replica_instructions.py``). It is safe because it changes no reply: the route does what
kserve's layers do for those request shapes (the model is called as kserve calls it, V2 goes through
kserve's own conversions, errors go through kserve's own handlers) and hands everything else (explain,
CloudEvents, V2's binary extension, bad JSON, unknown or unready models, a user's ``Model`` subclass)
to kserve untouched; ``tests/serving/test_fastpath.py`` compares the two byte for byte and
``tests/serving/test_sklearn_calls.py`` the predictions with stock scikit-learn's.

A replica names itself ``kfbox replica NAMESPACE/NAME rev N`` in ``ps`` (``--title``, set by its pool).

Native thread pools (OpenMP, BLAS) get one thread unless the server's or the InferenceService's
environment sets their variables (:mod:`kfbox.serving.native_threads`): replicas, not threads, serve
concurrent requests, and idle pool workers spinning on a shared machine cost the other processes cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from kfbox.server import warm
from kfbox.server.warm import Channel
from kfbox.serving import native_threads
from kfbox.serving.kserve_import import defer_kubernetes_client

LOOPBACK = "127.0.0.1"
FAILURE_PREFIX = "KFBOX_REPLICA_FAILED:"
EXIT_LOAD_FAILED = 3
_watching = False
PARENT_POLL_SECONDS = 0.5


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kfbox.serving.replica")
    parser.add_argument("--name", required=True)
    parser.add_argument("--format", required=True, dest="model_format")
    parser.add_argument("--model-path", type=Path, default=None)
    parser.add_argument("--model-class", default=None)
    parser.add_argument("--python-path", default=None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, default=0, help="0 keeps gRPC off")
    parser.add_argument("--allow-unsafe-pickle", action="store_true",
                        help="load pickle/joblib files with the unrestricted unpickler (the user opted in)")
    parser.add_argument("--title", default=None,
                        help="the process title ps shows, e.g. 'kfbox replica default/iris rev 2'")
    return parser.parse_args(argv)


def main(argv: list[str], channel: Channel | None = None, env: dict[str, str] | None = None) -> int:
    """Serve the model; ``env``: the InferenceService's environment, when a forked replica gets it late."""
    args = parse_args(argv)
    if args.title:
        _set_title(args.title)
    _exit_with_parent(channel)
    native_threads.set_defaults()  # a cold replica: before numpy and scikit-learn load
    native_threads.apply(env or {})  # forked: its libraries are loaded, resized if this changes them
    if args.model_path is not None and not args.model_path.exists():  # before ~2 s of kserve's imports
        print(f"{FAILURE_PREFIX} FileNotFoundError: the model path {args.model_path} does not exist", flush=True)
        return EXIT_LOAD_FAILED
    sys.argv = sys.argv[:1]  # before kserve is imported: its argparse runs at import time
    defer_kubernetes_client()  # a replica serves without kserve's Kubernetes client (kfbox.serving.kserve_import)
    # kserve's routes return FastAPI's deprecated ORJSONResponse: a warning in every replica's log that no user
    # can act on
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    try:
        from kfbox.serving.runtimes import build_model

        model = build_model(args.name, args.model_format, args.model_path, args.model_class, args.python_path,
                            args.allow_unsafe_pickle)
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported the same way
        print(f"{FAILURE_PREFIX} {type(exc).__name__}: {exc}", flush=True)
        return EXIT_LOAD_FAILED
    server = _loopback_server(args.port, args.grpc_port)
    server.start([model])
    return 0


def _set_title(title: str) -> None:
    """Name the process for ``ps``/``top``: otherwise every replica reads ``python -m kfbox.serving.forkserver``
    (forked) or a long ``python -m kfbox.serving.replica --name ...`` line that hides its service."""
    from setproctitle import setproctitle

    setproctitle(title)


def _exit_with_parent(channel: Channel | None = None) -> None:
    """Die when the server does, even by SIGKILL: replicas run in their own process group, so
    nothing else would stop them. The server's end of the warm channel closes with it (a blocked
    read, no polling; not a parent-death signal, which Linux ties to the server *thread* that
    started the replica); without a channel, a thread polls the parent pid."""
    global _watching
    if _watching:
        return
    _watching = True
    channel = channel or warm.inherited_channel()
    if channel is not None:
        from kfbox.serving import handoff_replica

        handoff_replica.watch(channel)  # also takes the hand-off socket (--data-plane handoff) when it comes
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="kfbox-parent-watch", daemon=True).start()


def log_config() -> dict[str, Any]:
    """kserve's default logging configuration without the per-request lines (access log, timing traces)."""
    import copy

    from kserve.logging import KSERVE_LOG_CONFIG

    config: dict[str, Any] = copy.deepcopy(KSERVE_LOG_CONFIG)
    for name in ("uvicorn.access", "kserve.trace"):
        config["loggers"][name]["level"] = "WARNING"
    return config


def _loopback_server(port: int, grpc_port: int) -> Any:
    from kserve import ModelServer
    from kserve.logging import configure_logging

    from kfbox.server.coalesce import coalescing_protocol

    configure_logging(log_config())  # before ModelServer, which configures only an unconfigured logger

    if grpc_port:
        _grpc_on_loopback()

    class LoopbackModelServer(ModelServer):  # type: ignore[misc]  # kserve ships no types
        """kserve's ModelServer, with its REST server bound to 127.0.0.1 instead of 0.0.0.0."""

        async def _serve(self) -> None:
            if self._rest_server is not None:
                self._rest_server.config.host = LOOPBACK
                # the same bytes, each reply's head and body in one write (kfbox.server.coalesce)
                self._rest_server.config.http = coalescing_protocol()
                without_timing_middleware(self._rest_server)
                self._rest_server.config.app = fast_predict(self.registered_models)
                from kfbox.serving import handoff_replica

                handoff_replica.serve_on(self._rest_server)  # connections kfbox's port hands over
            await super()._serve()

    return LoopbackModelServer(http_port=port, grpc_port=grpc_port or 8081, enable_grpc=bool(grpc_port),
                               enable_latency_logging=False, workers=1, grace_period=5)


def fast_predict(models: Any) -> Any:
    """kserve's REST app behind :class:`kfbox.serving.fastpath.FastPredict` (V1 predict and V2 infer of kfbox's
    runtimes)."""
    from kserve.model_server import app

    from kfbox.serving.fastpath import FastPredict

    return FastPredict(app, models)


def without_timing_middleware(rest_server: Any) -> None:
    """Leave timing_asgi's middleware out of kserve's REST app. kserve adds it whatever
    ``enable_latency_logging`` says, and its only output is one ``kserve.trace`` line per request,
    which :func:`log_config` turns off; it matched every request's route a second time to name that
    line: 4% of an iris V1 request's instructions (4.85 -> 4.65 M, callgrind). Replies are unchanged
    (``tests/serving/test_protocol.py`` compares them with a stock kserve server's)."""
    from kserve.model_server import app

    try:
        from timing_asgi import TimingMiddleware
    except ImportError:  # a kserve that no longer uses it
        return
    create = rest_server.create_application

    def create_application() -> None:  # kserve builds the app as the server starts, before any request
        create()
        app.user_middleware = [m for m in app.user_middleware if m.cls is not TimingMiddleware]

    rest_server.create_application = create_application


def _grpc_on_loopback() -> None:
    from grpc import aio

    server_class: Any = type(aio.server())
    original = server_class.add_insecure_port

    def add_insecure_port(self: Any, address: str) -> int:
        return int(original(self, address.replace("[::]", LOOPBACK)))

    server_class.add_insecure_port = add_insecure_port


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
