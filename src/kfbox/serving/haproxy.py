"""The optional HAProxy data plane: kfbox as its control plane, as KServe drives Istio/Envoy.

``kfbox up --data-plane haproxy`` (``KFBOX_DATA_PLANE=haproxy``) starts Debian's ``haproxy`` as a child
of the server, in master-worker mode, listening on the *ingress port* (``--ingress-port``, default the
server's port + 1, on the server's host). Inference traffic sent there goes straight from HAProxy to a
ready replica; everything else reaches kfbox's own server through HAProxy (what is routed and what is
not: :mod:`kfbox.serving.haproxy_config`). kfbox's port keeps serving everything, the Python gateway
included: the ingress port is an extra, faster door, not a replacement.

The control loop here:

- rewrites ``<home>/haproxy/haproxy.cfg`` (0600) whenever the ready replicas, the revisions' weights or
  the services change, and reloads HAProxy hitlessly (``SIGUSR2`` to the master: a new worker takes the
  listener, the old one finishes its requests);
- before a replica is stopped (scale down, a new revision, a delete) takes it out of HAProxy and waits
  for the old worker's requests to finish, so a drain loses no request;
- reads every worker's ``show stat`` through the master CLI socket a few times a second: requests in
  flight per revision feed the autoscaler and ``kfbox_serving_inflight_requests``, and a request seen
  keeps a revision from scaling to zero;
- counts each routed request from HAProxy's log datagram (:mod:`kfbox.serving.haproxy_log`).

The child dies with the server: ``PR_SET_PDEATHSIG`` on the master (a ``kill -9`` of kfbox), workers
exit with their master, and a master left by a server that could not clean up (its pid is in
``<home>/haproxy/haproxy.pid``) is stopped at the next start.

The child is supervised: when HAProxy exits (a crash, a ``kill -9``), its process group is stopped and it
is started again with the current configuration after a backoff (``KFBOX_DATA_PLANE_RESTART_BACKOFF``, default
0.5 s, doubling at each exit to at most 8 s: :func:`restart_delay`), each time with a log line. After
:data:`CRASH_LIMIT` exits within :data:`CRASH_WINDOW_SECONDS` it is left stopped, with an
error in the log: the ingress port is closed, and kfbox's own port (the Python gateway) still serves every
request. :meth:`HaproxyDataPlane.health` says which, on ``/healthz`` and in ``kfbox status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from kfbox.config import Settings
from kfbox.errors import InvalidInput, Unavailable
from kfbox.server.processes import ChildProcess
from kfbox.server.record import read_record
from kfbox.serving.deployment import traffic_split
from kfbox.serving.haproxy_config import Plan, Route, Server, render, revision_weights
from kfbox.serving.haproxy_log import RequestLog
from kfbox.serving.manager import ServingManager
from kfbox.serving.pool import free_port

if TYPE_CHECKING:
    from kfbox.serving.grpc_gateway import GrpcGateway

log = logging.getLogger(__name__)
INSTALL_HINT = "Install it with: sudo apt-get install haproxy (Debian/Ubuntu), or put a haproxy binary on PATH."
SYNC_SECONDS = 0.1
STATS_SECONDS = 0.25
READY_TIMEOUT_SECONDS = 10.0
RESTART_BACKOFF_MAX_SECONDS = 8.0
CRASH_LIMIT = 5
CRASH_WINDOW_SECONDS = 120.0
"""More than :data:`CRASH_LIMIT` exits within this window: HAProxy is left stopped (it would crash again)."""
SOCKET_PATH_MAX = 100


def restart_delay(settings: Settings, exits: int) -> float:
    """Seconds to wait before starting HAProxy again after its ``exits``-th exit within the crash window."""
    return min(settings.data_plane_restart_backoff * 2.0 ** (exits - 1), RESTART_BACKOFF_MAX_SECONDS)


def preflight(settings: Settings) -> str:
    """The haproxy binary; a clear error when it is absent or the settings cannot be written for it."""
    binary = shutil.which("haproxy")
    if binary is None:
        raise Unavailable(f"The HAProxy data plane needs haproxy, which is not installed (no 'haproxy' on PATH). "
                          f"{INSTALL_HINT} Or run without --data-plane haproxy (the Python gateway serves).")
    if settings.token and ("\n" in settings.token or "\r" in settings.token):
        raise InvalidInput("The token contains a line break, which HAProxy's pattern file cannot hold; "
                           "pick another token or run without --data-plane haproxy.")
    if read_record(settings.home) is None:  # no live server of this home: any HAProxy of its is a leftover
        stop_leftover(settings.home / "haproxy")
    port = configured_ingress_port(settings)
    if port:
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((settings.host, port))
            except OSError as exc:
                raise InvalidInput(f"HAProxy cannot listen on {settings.host}:{port}: {exc.strerror}. Pick another "
                                   "port with --ingress-port (0 picks a free one).") from exc
    return binary


def stop_leftover(folder: Path) -> None:
    """A master left behind by a server that died without its shutdown (and without the death signal)."""
    try:
        pid = int((folder / "haproxy.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return
    if cmdline and cmdline[0].endswith(b"haproxy") and str(folder).encode() in b" ".join(cmdline):
        log.warning("stopping a HAProxy (pid %d) left by an earlier kfbox server of this home", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def configured_ingress_port(settings: Settings) -> int:
    """The port HAProxy is to listen on: the setting, else the server's port + 1; 0 for a free one (the setting 0,
    or the server's port 0)."""
    if settings.ingress_port >= 0:
        return settings.ingress_port
    return settings.port + 1 if settings.port else 0


def ingress_port(settings: Settings) -> int:
    """The port HAProxy listens on: :func:`configured_ingress_port`, a free one picked now for 0."""
    return configured_ingress_port(settings) or free_port(settings.host)


@dataclasses.dataclass
class _Seen:
    """Last ``show stat`` figures of one revision in one service, to turn totals into activity."""

    total: int = 0
    inflight: int = 0


class HaproxyDataPlane:
    def __init__(self, manager: ServingManager, settings: Settings, grpc: GrpcGateway | None = None) -> None:
        self.manager = manager
        self.settings = settings
        self.grpc = grpc  # gRPC calls to the ingress port go to its port once it listens
        self.folder = settings.home / "haproxy"
        self.sockets = self.folder
        self.child: ChildProcess | None = None
        self.port = ingress_port(settings)
        self.plan: Plan | None = None
        self._seen: dict[tuple[str, str, str], _Seen] = {}
        self._task: asyncio.Task[None] | None = None
        self.request_log = RequestLog(manager)
        self._sync_lock = asyncio.Lock()
        self.binary: str | None = None
        self.restarts = 0
        self.failed: str | None = None
        """Why HAProxy is left stopped, after too many exits in a row; None while it is supervised."""
        self._exits: list[float] = []
        registry = manager.platform.metrics
        self.up = Gauge("kfbox_data_plane_up", "1 while HAProxy (the data plane) runs, 0 while it is restarted "
                        "or after it was given up.", registry=registry)
        self.restarts_total = Counter("kfbox_data_plane_restarts", "Times HAProxy was started again after it "
                                      "exited.", registry=registry)

    @property
    def url(self) -> str:
        host = self.settings.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Startup hook, on the server's loop (the parent-death signal follows the spawning thread)."""
        binary = self.binary = preflight(self.settings)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        self.sockets = self.folder if len(str(self.folder)) < SOCKET_PATH_MAX - 20 else \
            Path(tempfile.mkdtemp(prefix="kfbox-haproxy-"))
        self.request_log.listen(self.sockets / "log.sock")
        child = self._spawn(binary)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while child.alive and not self._listening() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._listening():
            self._refuse(child)
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.up.set(1)
        log.warning("HAProxy data plane: inference ingress on %s (pid %d)", self.url, child.pid)

    def health(self) -> str:
        """The data plane's state in one line, for ``/healthz`` and ``kfbox status``."""
        if self.failed is not None:
            return f"haproxy stopped: {self.failed}"
        child = self.child
        state = "up" if child is not None and child.alive else "restarting"
        restarts = f", restarted {self.restarts} time{'s' if self.restarts != 1 else ''}" if self.restarts else ""
        return f"haproxy {state} on {self.url}{restarts}"

    def _spawn(self, binary: str) -> ChildProcess:
        """Start HAProxy with the current plan: on the loop's thread (the parent-death signal follows it)."""
        self.plan = self._plan()
        config = self._write(self.plan)
        argv = [binary, "-W", "-S", f"{self.sockets / 'master.sock'},mode,600", "-f", str(config),
                "-p", str(self.folder / "haproxy.pid")]
        self._seen.clear()  # a new worker's counters start at zero
        self.child = ChildProcess.spawn(argv, log_path=self.settings.logs_dir / "haproxy.log", die_with_parent=True)
        return self.child

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.request_log.close()
        if self.child is not None:
            self.child.stop(grace=3)
            self.child = None
        (self.folder / "haproxy.pid").unlink(missing_ok=True)
        if self.sockets != self.folder:
            shutil.rmtree(self.sockets, ignore_errors=True)

    def _listening(self) -> bool:
        """Whether the ingress port accepts a connection (HAProxy's worker has bound it)."""
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else \
            "::1" if self.settings.host == "::" else self.settings.host
        if self.child is None or not self.child.alive:
            return False
        with contextlib.suppress(OSError), socket.create_connection((host, self.port), timeout=0.5):
            return True
        return False

    def _refuse(self, child: ChildProcess) -> None:
        tail = child.log_path.read_text(errors="replace").splitlines()[-10:]
        child.stop(grace=1)
        raise Unavailable(f"HAProxy did not start listening on port {self.port}:\n" + "\n".join(tail) +
                          f"\nFull log: {self.settings.logs_dir / 'haproxy.log'}")

    # --- configuration -------------------------------------------------------------------
    def _plan(self) -> Plan:
        routes = []
        for (namespace, name), deployment in list(self.manager.deployments.items()):
            split = {n: pct for n, pct in traffic_split(deployment.record).items() if pct > 0}
            ready = {n: [r for r in deployment.pools[n].replicas if r.ready]
                     for n in split if n in deployment.pools}
            ready = {n: replicas for n, replicas in ready.items() if replicas}
            if not ready:  # starting, scaled to zero, failing: kfbox's gateway holds or answers
                continue
            pools = {n: deployment.pools[n] for n in ready}
            weights = revision_weights({str(n): split[n] for n in ready}, {str(n): len(r) for n, r in ready.items()})
            servers = tuple(Server(pools[n].config.revision, replica.index, replica.port, weights[str(n)])
                            for n, replicas in sorted(ready.items()) for replica in replicas)
            limit = self.settings.serving_queue_per_replica * len(servers)
            routes.append(Route(namespace, name, servers, limit, split=len(ready) > 1))
        host = self.settings.host
        kfbox_host = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
        token_file = None
        if self.settings.token:
            token_file = str(self.folder / "token.lst")
        return Plan(bind_host=host, port=self.port, kfbox_host=kfbox_host, kfbox_port=self.settings.port,
                    domain=self.settings.ingress_domain, max_body_bytes=self.settings.serving_max_body_bytes,
                    log_socket=str(self.sockets / "log.sock"), token_file=token_file,
                    routes=tuple(sorted(routes, key=lambda r: r.key)),
                    grpc_port=self.grpc.port if self.grpc is not None else None,
                    drain_seconds=self.settings.serving_drain_seconds,
                    kfbox_maxconn=max(1, self.settings.max_connections_per_client // 2)
                    if self.settings.max_connections_per_client else 1024)

    def _write(self, plan: Plan) -> Path:
        """Write the configuration (and the token file) as whole files: the master may read either at any time."""
        if plan.token_file is not None:
            _write_private(Path(plan.token_file), f"Bearer {self.settings.token}\n")
        path = self.folder / "haproxy.cfg"
        _write_private(path, render(plan))
        return path

    async def sync(self) -> None:
        """Rewrite the configuration and reload HAProxy when what it routes has changed.

        One at a time (the loop and a stopping replica both call it); a configuration HAProxy refuses
        (``haproxy -c``) is logged and not loaded, since a failed reload leaves no worker listening."""
        async with self._sync_lock:
            plan = self._plan()
            if plan == self.plan or self.child is None or not self.child.alive or self.binary is None:
                return
            self.plan = plan
            candidate = self.folder / "haproxy.cfg.new"
            await asyncio.to_thread(_write_private, candidate, render(plan))
            check = await asyncio.create_subprocess_exec(self.binary, "-c", "-q", "-f", str(candidate),
                                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, errors = await check.communicate()
            if check.returncode != 0:
                log.error("HAProxy refused kfbox's configuration %s; routes unchanged: %s", candidate,
                          errors.decode(errors="replace").strip())
                return
            await asyncio.to_thread(self._write, plan)
            self._seen.clear()  # the new worker's counters start at zero
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile: the loop restarts it with this plan
                os.kill(self.child.pid, signal.SIGUSR2)
            log.info("HAProxy reloaded: %d services routed", len(plan.routes))

    async def release(self, port: int) -> None:
        """Before a replica on ``port`` stops: out of HAProxy, and every request HAProxy sent it finished."""
        if self.child is None or not self.child.alive:
            return
        await self.sync()
        deadline = time.monotonic() + self.settings.serving_drain_seconds
        while time.monotonic() < deadline and self.child is not None and self.child.alive:
            workers = await self._workers()
            if workers is not None and workers <= 1:
                return
            await asyncio.sleep(0.05)

    # --- the loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        last_stats = 0.0
        while True:
            child = self.child
            if child is not None and not child.alive and not await self._restart(child):
                return
            try:
                await self.sync()
                now = time.monotonic()
                if now - last_stats >= STATS_SECONDS:
                    last_stats = now
                    await self._read_stats(now)
            except Exception:  # the data plane must not stop syncing over one bad round
                log.exception("HAProxy data plane: sync failed")
            await asyncio.sleep(SYNC_SECONDS)

    async def _restart(self, child: ChildProcess) -> bool:
        """HAProxy exited: start it again with the current configuration, after a backoff; False once it
        has exited too often to try again (:data:`CRASH_LIMIT`), with the reason in :attr:`failed`."""
        code = child.returncode
        self.up.set(0)
        await asyncio.to_thread(child.stop, 1.0)  # its group too: no orphaned worker keeps the port, or an old config
        self._forget_inflight()
        now = time.monotonic()
        self._exits = [t for t in self._exits if now - t < CRASH_WINDOW_SECONDS] + [now]
        if len(self._exits) > CRASH_LIMIT or self.binary is None:
            self.failed = (f"it exited {len(self._exits)} times within {CRASH_WINDOW_SECONDS:.0f}s (last with "
                           f"{code}); the ingress port {self.url} is closed, kfbox's own port still serves "
                           f"inference. See {child.log_path}; restart kfbox to try again")
            self.child = None
            log.error("HAProxy data plane not restarted: %s", self.failed)
            return False
        delay = restart_delay(self.settings, len(self._exits))
        log.error("HAProxy (the data plane on %s) exited with %s; restarting it in %gs with the current "
                  "configuration. See %s", self.url, code, delay, child.log_path)
        await asyncio.sleep(delay)
        async with self._sync_lock:
            fresh = self._spawn(self.binary)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not await asyncio.to_thread(self._listening):
            if not fresh.alive:
                return True  # exited again: the loop counts it
            if time.monotonic() > deadline:
                await asyncio.to_thread(fresh.stop, 1.0)
                return True
            await asyncio.sleep(0.05)
        self.restarts += 1
        self.restarts_total.inc()
        self.up.set(1)
        log.warning("HAProxy data plane restarted: inference ingress on %s again (pid %d)", self.url, fresh.pid)
        return True

    def _forget_inflight(self) -> None:
        """The requests a dead HAProxy held are gone: none in flight through it any more."""
        for (namespace, name), deployment in list(self.manager.deployments.items()):
            for pool in deployment.pools.values():
                if pool.external_inflight:
                    self.manager.metrics.inflight.labels(namespace, name).dec(pool.external_inflight)
                    pool.external_inflight = 0
        self._seen.clear()

    async def _command(self, command: str) -> str | None:
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.sockets / "master.sock"))
        except OSError:
            return None
        try:
            writer.write(command.encode() + b"\n")
            writer.write_eof()  # the master CLI answers, then closes, once the client has said all
            await writer.drain()
            return (await asyncio.wait_for(reader.read(), 2.0)).decode(errors="replace")
        except (OSError, TimeoutError):
            return None
        finally:
            writer.close()

    async def _workers(self) -> int | None:
        """Worker processes alive, the old ones still finishing requests included."""
        text = await self._command("show proc")
        if text is None:
            return None
        return sum(1 for line in text.splitlines() if line.split()[1:2] == ["worker"])

    async def _read_stats(self, now: float) -> None:
        totals: dict[tuple[str, str, str], _Seen] = {}
        if self.plan is not None and self.plan.routes:
            text = await self._command("@1 show stat -1 4 -1")  # the current worker, servers only
            if text is None:
                return
            backends = {route.backend: route for route in self.plan.routes}
            for line in text.splitlines():
                fields = line.split(",")
                if len(fields) < 8 or fields[0] not in backends:
                    continue
                route = backends[fields[0]]
                key = (route.namespace, route.name, fields[1].split(":", 1)[0])
                seen = totals.setdefault(key, _Seen())
                seen.inflight += int(fields[4] or 0) + int(fields[2] or 0)
                seen.total += int(fields[7] or 0)
        fresh: dict[tuple[str, str, str], _Seen] = {}
        for (namespace, name), deployment in list(self.manager.deployments.items()):
            for pool in deployment.pools.values():
                key = (namespace, name, pool.config.revision)
                seen = totals.get(key, _Seen())  # not routed (any more): nothing in flight through HAProxy
                if seen.total > self._seen.get(key, _Seen()).total:
                    pool.last_request_at = now  # requests through HAProxy keep the revision from scaling down
                if seen.inflight != pool.external_inflight:
                    self.manager.metrics.inflight.labels(namespace, name).inc(seen.inflight - pool.external_inflight)
                    pool.external_inflight = seen.inflight
                fresh[key] = seen
        self._seen = fresh  # deleted services and closed revisions drop out


def _write_private(path: Path, text: str) -> None:
    """Replaced whole (a reader never sees half a file) and 0600 from its creation: the token file and the
    configuration naming it."""
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(part, 0o600)
    os.replace(part, path)
