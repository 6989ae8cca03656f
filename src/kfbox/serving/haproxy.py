"""The optional HAProxy data plane: kfbox as its control plane, as KServe drives Istio/Envoy.

``kfbox up --data-plane haproxy`` (``KFBOX_DATA_PLANE=haproxy``) starts Debian's ``haproxy`` as a child
of the server, in master-worker mode, listening on the *ingress port* (``--ingress-port``, default the
server's port + 1, on the server's host). Inference traffic sent there goes straight from HAProxy to a
ready replica; everything else reaches kfbox's own server through HAProxy (what is routed and what is
not: :mod:`kfbox.serving.haproxy_config`). kfbox's port keeps serving everything, the Python gateway
included: the ingress port is an extra, faster door, not a replacement.

The control loop here:

- moves the ready replicas and the revisions' weights into HAProxy through its runtime API, without a
  reload: each service's backends have server slots, filled and emptied over the master CLI socket
  (:mod:`kfbox.serving.haproxy_runtime`), and a split service is sent to its round robin backend by a map entry,
  so a scale up or down, a new revision, a replaced replica, a new canary percent or a split turned on or off
  starts no new worker and closes no client connection;
- rewrites ``<home>/haproxy/haproxy.cfg`` (0600) and reloads HAProxy (``SIGUSR2`` to the master: a new
  worker takes the listener, the old one finishes its requests and keeps idle keep-alive connections
  for their next request, ``option idle-close-on-response``) only for what the runtime API cannot
  change: a service created or deleted, a service's slots all taken;
  the configuration written always holds the current slots, so a new worker (or a restarted HAProxy)
  starts with them;
- before a replica is stopped (scale down, a new revision, a delete) takes it out of every worker
  (``maint``) and waits until no worker has a request at it (``scur``, bounded by the drain grace), so a
  drain loses no request; it never waits for an old worker to exit;
- reads every worker's ``show stat`` through the master CLI socket a few times a second: requests in
  flight per revision feed the autoscaler and ``kfbox_serving_inflight_requests``, and a request seen
  keeps a revision from scaling to zero;
- counts each routed request from HAProxy's log line, forwarded over a stream (:mod:`kfbox.serving.haproxy_log`).

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
import http.client
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from prometheus_client import Counter, Gauge

from kfbox.addresses import connect_host, local_url
from kfbox.config import Settings
from kfbox.errors import InvalidInput, Unavailable
from kfbox.server.processes import ChildProcess
from kfbox.server.record import read_record
from kfbox.serving.deployment import traffic_split
from kfbox.serving.haproxy_config import PROBE_HEADER, PROBE_PATH, Plan, Route, render, split_text
from kfbox.serving.haproxy_log import RequestLog
from kfbox.serving.haproxy_runtime import (
    FreedSlots,
    MasterSocket,
    layout,
    map_commands,
    map_text,
    revisions,
    server_commands,
    service_route,
    split_commands,
    stat_rows,
    worker_pids,
)
from kfbox.serving.manager import ServingManager
from kfbox.serving.pool import free_port
from kfbox.serving.store import revision_name

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
DataPlaneState = Literal["up", "restarting", "stopped"]
RELOAD_WAIT_SECONDS = 5.0
"""How long a reload waits for the new worker before sending it runtime commands (else: all of them later)."""


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
        """What HAProxy was last given: the configuration's layout and the slots set at run time."""
        self.master = MasterSocket(self.sockets / "master.sock")
        self._applied = False
        """Whether the current worker has :attr:`plan`'s slots (False: set every slot at the next sync)."""
        self._revisions: dict[int, str] = {}
        self._freed = FreedSlots(settings.serving_drain_seconds)
        self._refused: Plan | None = None
        """A layout ``haproxy -c`` refused: not tried again until the layout changes."""
        self._totals: dict[tuple[str, str], int] = {}
        """``stot`` per (backend, slot) at the last stats read, to turn totals into activity."""
        self._task: asyncio.Task[None] | None = None
        self.request_log = RequestLog(manager)
        self._sync_lock = asyncio.Lock()
        self.binary: str | None = None
        self.restarts = 0
        self.failed: str | None = None
        """Why HAProxy is left stopped, after too many exits in a row; None while it is supervised."""
        self._listens = False
        """Whether the current HAProxy was seen listening on the ingress port (False from its exit until a
        restarted one listens: what users are told, :attr:`state`)."""
        self._exits: list[float] = []
        registry = manager.platform.metrics
        self.up = Gauge("kfbox_data_plane_up", "1 while HAProxy (the data plane) runs, 0 while it is restarted "
                        "or after it was given up.", registry=registry)
        self.restarts_total = Counter("kfbox_data_plane_restarts", "Times HAProxy was started again after it "
                                      "exited.", registry=registry)

    @property
    def url(self) -> str:
        """The ingress URL for clients on this machine (loopback for a wildcard bind): ``ingress_url`` in
        ``server.json`` and ``/healthz``, the dashboard's links."""
        return local_url(self.settings.host, self.port)

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Startup hook, on the server's loop (the parent-death signal follows the spawning thread)."""
        binary = self.binary = preflight(self.settings)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        plain = len(str(self.folder)) < SOCKET_PATH_MAX - 20 and str(self.folder).isascii() and \
            not set(str(self.folder)) & set(" ,()'\"\\#$%")  # HAProxy's sample arguments take the map's path bare
        self.sockets = self.folder if plain else Path(tempfile.mkdtemp(prefix="kfbox-haproxy-"))
        self.master = MasterSocket(self.sockets / "master.sock")
        self.request_log.listen(self.sockets / "log.sock")
        child = self._spawn(binary)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while child.alive and not self._listening() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._listening():
            self._refuse(child)
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._listens = True
        self.up.set(1)
        log.warning("HAProxy data plane: inference ingress on %s (pid %d)", self.url, child.pid)

    @property
    def state(self) -> DataPlaneState:
        """``up`` (HAProxy runs and listens), ``restarting`` (it exited and is started again after a backoff,
        until the new one listens: the ingress port may refuse meanwhile, as when another program holds it) or
        ``stopped`` (given up after repeated exits, :attr:`failed` says why): the dashboard picks its door by it."""
        if self.failed is not None:
            return "stopped"
        return "up" if self._listens and self.child is not None and self.child.alive else "restarting"

    def health(self) -> str:
        """The data plane's state in one line, for ``/healthz`` and ``kfbox status``."""
        state = self.state
        if state == "stopped":
            return f"haproxy stopped: {self.failed}"
        restarts = f", restarted {self.restarts} time{'s' if self.restarts != 1 else ''}" if self.restarts else ""
        return f"haproxy {state} on {self.url}{restarts}"

    def _spawn(self, binary: str) -> ChildProcess:
        """Start HAProxy with the current plan: on the loop's thread (the parent-death signal follows it)."""
        now = time.monotonic()
        plan = self._plan(now)
        self._commit(plan, now, fresh=True)
        config = self._write(plan)  # the current slots: nothing to set at run time before the next change
        self._applied = True
        self._refused = None
        argv = [binary, "-W", "-S", f"{self.master.path},mode,600", "-f", str(config),
                "-p", str(self.folder / "haproxy.pid")]
        self._totals.clear()  # a new worker's counters start at zero
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
        """Whether HAProxy answers on the ingress port: its own reply to :data:`PROBE_PATH`, not just a connection,
        which another program holding the port would accept too (a restart then read as done while it failed)."""
        if self.child is None or not self.child.alive:
            return False
        connection = http.client.HTTPConnection(connect_host(self.settings.host), self.port, timeout=0.5)
        try:
            connection.request("GET", PROBE_PATH)
            reply = connection.getresponse()
            return reply.status == 204 and reply.getheader(PROBE_HEADER) == "haproxy"
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _refuse(self, child: ChildProcess) -> None:
        tail = child.log_path.read_text(errors="replace").splitlines()[-10:]
        child.stop(grace=1)
        raise Unavailable(f"HAProxy did not start listening on port {self.port}:\n" + "\n".join(tail) +
                          f"\nFull log: {self.settings.logs_dir / 'haproxy.log'}")

    # --- configuration -------------------------------------------------------------------
    def _plan(self, now: float) -> Plan:
        """What HAProxy should route now: every service (a service with no ready replica has only empty slots,
        and kfbox's gateway answers it), each ready replica in a slot (the one it had, else a free one)."""
        previous = {route.backend: route.slots for route in self.plan.routes} if self.plan is not None else {}
        self._freed.expire(now)
        routes = []
        for (namespace, name), deployment in list(self.manager.deployments.items()):
            backend = Route(namespace, name, ()).backend
            percents = {revision_name(name, n): pct for n, pct in traffic_split(deployment.record).items()}
            ready = {pool.config.revision: [(r.index, r.port) for r in pool.replicas if r.ready]
                     for _, pool in sorted(deployment.pools.items())}
            most = max((pool.spec.max_replicas for pool in deployment.pools.values()), default=1)
            limits = {pool.config.revision: pool.limit for pool in deployment.pools.values()}
            routes.append(service_route(namespace, name, percents, ready, previous.get(backend, ()),
                                        self._freed.busy(backend), most, limits))
        token_file = None
        if self.settings.token:
            token_file = str(self.folder / "token.lst")
        return Plan(bind_host=self.settings.host, port=self.port, kfbox_host=connect_host(self.settings.host),
                    kfbox_port=self.settings.port, domain=self.settings.ingress_domain,
                    max_body_bytes=self.settings.serving_max_body_bytes,
                    log_socket=str(self.sockets / "log.sock"), token_file=token_file,
                    routes=tuple(sorted(routes, key=lambda r: r.key)),
                    grpc_port=self.grpc.port if self.grpc is not None else None,
                    drain_seconds=self.settings.serving_drain_seconds,
                    kfbox_maxconn=max(1, self.settings.max_connections_per_client // 2)
                    if self.settings.max_connections_per_client else 1024,
                    queue_per_replica=self.settings.serving_queue_per_replica,
                    revision_map=str(self.sockets / "revisions.map"), split_map=str(self.sockets / "split.map"))

    def _commit(self, plan: Plan, now: float, fresh: bool = False) -> None:
        """``plan`` is what HAProxy has now: the slots it emptied are kept from other replicas while theirs
        finish (:meth:`release`), and their revisions stay in the map meanwhile. A ``fresh`` HAProxy (a start, a
        restart) has sent no request anywhere yet: no slot is kept."""
        if fresh:
            self._freed.clear()
        else:
            self._freed.commit(self.plan, plan, now)
        self.plan = plan
        self._revisions = revisions(plan, self._freed.draining())

    def _write(self, plan: Plan) -> Path:
        """Write the configuration, the revision map and the token file as whole files: the master may read
        any of them at any time."""
        if plan.token_file is not None:
            _write_private(Path(plan.token_file), f"Bearer {self.settings.token}\n")
        _write_private(Path(plan.revision_map), map_text(self._revisions))
        _write_private(Path(plan.split_map), split_text(plan))
        path = self.folder / "haproxy.cfg"
        _write_private(path, render(plan))
        return path

    async def sync(self) -> None:
        """Bring HAProxy to what kfbox routes now: through the runtime API when only slots changed, else a
        new configuration and a reload.

        One at a time (the loop and a stopping replica both call it); a configuration HAProxy refuses
        (``haproxy -c``) is logged and not loaded, since a failed reload leaves no worker listening."""
        async with self._sync_lock:
            if self.child is None or not self.child.alive or self.binary is None:
                return
            now = time.monotonic()
            plan = self._plan(now)
            if plan == self.plan and self._applied:
                return
            if self._refused is not None and layout(plan) == self._refused:
                return
            if self.plan is not None and layout(plan) == layout(self.plan):
                await self._apply(plan, now)
            else:
                await self._reload(plan, now)

    async def _apply(self, plan: Plan, now: float) -> None:
        """The slots of ``plan`` into the current worker, at run time."""
        before, known = self.plan, self._applied
        old_revisions = dict(self._revisions)
        self._commit(plan, now)
        off, on = split_commands(plan.split_map, before if known else None, plan)
        commands = map_commands(plan.revision_map, old_revisions if known else None, self._revisions) + off + \
            server_commands(before if known else None, plan) + on
        problems = await self.master.run("@1", commands)
        self._applied = problems is not None
        if problems:
            log.warning("HAProxy's runtime API refused part of a change (%s): %s", "; ".join(commands),
                        " | ".join(problems))
        # the files too: a reload or a restart starts from them
        await asyncio.to_thread(_write_private, Path(plan.revision_map), map_text(self._revisions))
        await asyncio.to_thread(_write_private, Path(plan.split_map), split_text(plan))
        log.info("HAProxy: %d replicas routed, changed at run time", sum(len(r.servers) for r in plan.routes))

    async def _reload(self, plan: Plan, now: float) -> None:
        """A new configuration (it holds the current slots) and a reload; runtime commands wait for the new
        worker, so they never reach the old one."""
        candidate = self.folder / "haproxy.cfg.new"
        await asyncio.to_thread(_write_private, candidate, render(plan))
        assert self.binary is not None and self.child is not None
        check = await asyncio.create_subprocess_exec(self.binary, "-c", "-q", "-f", str(candidate),
                                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, errors = await check.communicate()
        if check.returncode != 0:
            self._refused = layout(plan)
            log.error("HAProxy refused kfbox's configuration %s; routes unchanged: %s", candidate,
                      errors.decode(errors="replace").strip())
            return
        self._refused = None
        answer = await self.master.ask("show proc")
        before = worker_pids(answer)[0] if answer is not None else None
        self._commit(plan, now)
        await asyncio.to_thread(self._write, plan)
        self._applied = False
        with contextlib.suppress(ProcessLookupError):  # exited meanwhile: the loop restarts it with this plan
            os.kill(self.child.pid, signal.SIGUSR2)
        deadline = time.monotonic() + RELOAD_WAIT_SECONDS
        while time.monotonic() < deadline and self.child is not None and self.child.alive:
            answer = await self.master.ask("show proc")
            current = worker_pids(answer)[0] if answer is not None else None
            if current is not None and current != before:
                self._applied = True  # it read the slots from the configuration
                break
            await asyncio.sleep(0.02)
        self._totals.clear()  # the new worker's counters start at zero
        log.info("HAProxy reloaded: %d services routed", len(plan.routes))

    async def release(self, port: int) -> None:
        """Before a replica on ``port`` stops: out of every HAProxy worker, and every request HAProxy sent it
        finished (bounded by the drain grace). Old workers are not waited for: they may keep an idle client
        connection until its next request."""
        if self.child is None or not self.child.alive:
            return
        await self.sync()
        deadline = time.monotonic() + self.settings.serving_drain_seconds
        try:
            while time.monotonic() < deadline and self.child is not None and self.child.alive:
                if await self._finished(port):
                    return
                await asyncio.sleep(0.05)
        finally:
            self._freed.release(port)

    def forget(self, port: int) -> None:
        """A replica on ``port`` that was routed died (or was stopped as broken): its slot is free for the next
        replica as soon as the next sync has taken it out (maint). No request HAProxy sent it can still finish,
        so there is nothing to wait for (:meth:`release` waits for a replica stopped alive, bounded by the drain
        grace); and nothing to wait on either, so the serving loop calls it as it reaps the replica."""
        self._freed.died(port)

    async def _finished(self, port: int) -> bool:
        """Whether no worker has a request at the replica on ``port``; a worker still routing to it (an old one,
        which runtime changes do not reach) is told to stop."""
        answer = await self.master.ask("show proc")
        if answer is None:
            return False
        busy = 0
        for pid in worker_pids(answer)[1]:
            text = await self.master.ask(f"@!{pid} show stat -1 4 -1")
            if text is None:
                return False
            rows = [row for row in stat_rows(text) if row.port == port]
            stop = [f"set server {row.backend}/{row.server} state maint" for row in rows if row.status != "MAINT"]
            if stop:
                await self.master.run(f"@!{pid}", stop)
            busy += sum(row.inflight for row in rows)
        return busy == 0

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
        self._listens = False
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
        self._listens = True
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
        self._totals.clear()

    async def _read_stats(self, now: float) -> None:
        """The current worker's requests in flight per revision (the autoscaler's and the gauge's figure), and
        the requests each revision was sent since the last read (:meth:`ReplicaPool.admit`)."""
        inflight: dict[tuple[str, str, str], int] = {}
        sent: dict[tuple[str, str, str], int] = {}
        totals: dict[tuple[str, str], int] = {}
        if self.plan is not None and self.plan.routes:
            text = await self.master.ask("@1 show stat -1 4 -1")  # the current worker, servers only
            if text is None:
                return
            backends = {backend: route for route in self.plan.routes for backend in route.backends}
            for row in stat_rows(text):
                route = backends.get(row.backend)
                revision = self._revisions.get(row.port)
                if route is None or revision is None:
                    continue
                key = (route.namespace, route.name, revision)
                inflight[key] = inflight.get(key, 0) + row.inflight
                totals[(row.backend, row.server)] = row.total
                before = self._totals.get((row.backend, row.server), 0)
                grown = row.total - before if row.total >= before else row.total  # fewer: a new worker's counter
                if grown:
                    sent[key] = sent.get(key, 0) + grown
        for (namespace, name), deployment in list(self.manager.deployments.items()):
            for pool in deployment.pools.values():
                key = (namespace, name, pool.config.revision)
                if key in sent:  # requests through HAProxy: no scale to zero, and they count toward rps
                    pool.admit(now, sent[key])
                seen = inflight.get(key, 0)  # not routed (any more): nothing in flight through HAProxy
                if seen != pool.external_inflight:
                    self.manager.metrics.inflight.labels(namespace, name).inc(seen - pool.external_inflight)
                    pool.external_inflight = seen
        self._totals = totals  # deleted services and emptied slots drop out


def _write_private(path: Path, text: str) -> None:
    """Replaced whole (a reader never sees half a file) and 0600 from its creation: the token file and the
    configuration naming it."""
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(part, 0o600)
    os.replace(part, path)
