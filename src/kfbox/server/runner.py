"""Run the platform in the foreground: migrate, bind, serve until SIGINT/SIGTERM.

The server records itself in the home (``kfbox.pid``, ``server.json``) once it is
ready, so ``kfbox status``/``down`` and every client command can find it, and
removes both on a clean stop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from kfbox.config import Settings
from kfbox.db import Database
from kfbox.errors import Conflict, InvalidInput
from kfbox.server.app import create_app
from kfbox.server.logs import configure_logging
from kfbox.server.platform import Platform
from kfbox.server.protocol import guarded_protocol
from kfbox.server.record import pid_alive, read_record

__all__ = ["pid_alive", "read_record", "serve"]

GRACEFUL_SHUTDOWN_SECONDS = 10
KEEP_ALIVE_SECONDS = 5
PRELOAD_AFTER_SECONDS = 0.3
"""After the start-up hooks: the first /healthz is answered before the preload competes for the interpreter."""


def serve(settings: Settings, on_bound: Callable[[Settings], None] | None = None) -> None:
    """Run the server in this process until it is stopped. ``on_bound`` is called with the settings once the
    port is bound (its real number when ``settings.port`` is 0), before the database and the app start."""
    configure_logging(settings.log_level)
    settings.home.mkdir(parents=True, exist_ok=True)
    existing = read_record(settings.home)
    if existing:
        raise Conflict(f"A kfbox server (pid {existing['pid']}) already runs at {existing['url']} for "
                       f"home {settings.home}. Stop it with: kfbox down --home {settings.home}")
    sock = _bind(settings.host, settings.port)
    settings = bound(settings, sock.getsockname()[1])
    if on_bound is not None:
        on_bound(settings)
    db = Database(settings.db_url)
    db.upgrade()
    platform = Platform(settings=settings, db=db)
    platform.on_startup.append(lambda: _write_record(platform))
    # shutdown hooks run last-added first: every subsystem's stop, then the database closes, then the record
    # goes (so `kfbox down` returns once the database is closed). Closed in a hook, not after run(): uvicorn
    # re-raises the SIGTERM it caught once the app has stopped, so nothing after run() ran, and SQLite's
    # last connection never checkpointed the WAL: kfbox.db alone held none of the data, and every start
    # replayed the whole WAL
    platform.on_shutdown.insert(0, db.dispose)
    platform.on_shutdown.insert(0, lambda: _remove_record(settings.home))
    app = create_app(settings, platform)
    platform.on_startup.append(_settle_memory)
    platform.on_startup.append(_preload_later)
    # guarded_protocol: header/body read deadlines and a per-client connection cap (slowloris);
    # uvicorn's timeout_keep_alive covers the idle time between requests
    protocol = guarded_protocol(settings, app.state.short_lane, platform.door)
    config = uvicorn.Config(app, log_level=settings.log_level, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                            access_log=False, lifespan="on", http=protocol,
                            timeout_keep_alive=KEEP_ALIVE_SECONDS)
    _stop_on_sigint_says_so()
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        db.dispose()  # a start that failed before the shutdown hooks


def bound(settings: Settings, port: int) -> Settings:
    """The settings the server runs with once it listens on ``port``. Asked for a free port (``--port 0``), it
    gives HAProxy's ingress a free port too (``ingress_port`` 0), not the default "the server's port + 1",
    which nobody checked was free."""
    ingress = 0 if settings.port == 0 and settings.ingress_port < 0 else settings.ingress_port
    return dataclasses.replace(settings, port=port, ingress_port=ingress)


def _stop_on_sigint_says_so() -> None:
    """A server started with SIGINT ignored (a background job of a script, ``cmd &`` without job control, and
    everything that job starts) stops on it anyway once it serves: uvicorn's handler replaces the ignore. Its
    stop then re-raises the signal under the disposition it found, ignored, so ``kfbox up`` returned as if
    nothing had happened and exited 0 instead of 130 (the Ctrl-C code every kfbox command exits with). Python's
    own handler instead, from here on: start-up before this still ignores it, as the caller asked."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _settle_memory() -> None:
    """The last start-up hook: what start-up built (~110k objects, next to no garbage) goes to the permanent
    generation, so a full collection no longer walks it (one cost ~85 ms of CPU on the event loop, a gateway
    tail); then collection resumes (``kfbox up`` turns it off while the server imports)."""
    gc.freeze()
    gc.enable()


def _preload_later() -> None:
    """Once the server is up, import on the event loop what the first request of any API needs and a start
    does not (FastAPI and pydantic, ~0.15 s of CPU: kfbox.server.application), so that request does not pay
    it; ready no longer waits for it. What it built joins the frozen start-up objects (see _settle_memory).

    On the loop, not in a thread: a request importing FastAPI at the same moment as a thread raced it into
    a half-initialised ``fastapi.routing`` (a 500, then every later API request failed with it)."""
    asyncio.get_running_loop().call_later(PRELOAD_AFTER_SECONDS, _preload)


def _preload() -> None:
    import fastapi.routing  # noqa: F401
    import pydantic  # noqa: F401

    gc.freeze()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"Cannot listen on {host}:{port}: {exc.strerror}. "
                           "Pick another port with --port (0 picks a free one).") from exc
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _write_record(platform: Platform) -> None:
    home = platform.settings.home
    record = {"pid": os.getpid(), "url": platform.url, "host": platform.settings.host,
              "port": platform.settings.port, "started_at": time.time(), **platform.record}
    tmp = home / "server.json.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, home / "server.json")
    (home / "kfbox.pid").write_text(str(os.getpid()))


def _remove_record(home: Path) -> None:
    for name in ("server.json", "kfbox.pid"):
        (home / name).unlink(missing_ok=True)
