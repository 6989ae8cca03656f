"""The replicas of one revision: spawn, probe, replace, scale, and pick one for a request.

Every method runs on the server's event loop; blocking work (spawning, stopping, resolving a
storage URI) goes to a thread. A replica that dies before it is ready is a load failure:
its ``KFBOX_REPLICA_FAILED`` line becomes the pool's reason and restarts back off
exponentially; one that dies after being ready is simply replaced.

A revision's ``containerConcurrency`` (:attr:`PredictorSpec.container_concurrency`) is each replica's hard
limit, as Knative's queue-proxy enforces it: :meth:`ReplicaPool.pick` never picks a replica with that many
requests in flight, and a request finding every ready replica at its limit waits in :meth:`ReplicaPool.wait_slot`
until one is released (:meth:`ReplicaPool.release`), within the gateway's overload bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from kfbox.server.processes import ChildProcess, read_proc
from kfbox.serving.autoscaler import Autoscaler
from kfbox.serving.launcher import ReplicaLauncher
from kfbox.serving.replica import FAILURE_PREFIX
from kfbox.serving.scaling_spec import UTILIZATION_METRICS
from kfbox.serving.spec import PredictorSpec
from kfbox.serving.upstream import UpstreamError, Upstreams

PROBE_TIMEOUT = 0.5
MAX_BACKOFF = 30.0
SLOT_TIMEOUT = 300.0
"""Seconds a request waits for a replica below its ``containerConcurrency`` (HAProxy's ``timeout queue``)."""


@dataclasses.dataclass
class Replica:
    index: int
    port: int
    child: ChildProcess
    started_at: float
    ready_at: float | None = None
    inflight: int = 0
    broken: bool = False
    grpc_port: int = 0
    picked: int = 0
    """When :meth:`ReplicaPool.pick` last chose it, as the pool's pick count (no clock read on the request path)."""
    cpu_mark: tuple[float, float] | None = None
    """(CPU seconds, when) at the last tick that read it ready: its CPU use since comes from the next reading."""
    created: float = dataclasses.field(default_factory=time.time)
    """Wall-clock seconds at spawn (``started_at`` is the loop's monotonic clock): the Pod's ``startTime``."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ready(self) -> bool:
        return self.ready_at is not None and not self.broken


@dataclasses.dataclass
class PoolConfig:
    model_name: str
    revision: str
    log_dir: Path
    scale_window: float
    start_timeout: float
    on_replica_ready: Callable[[float], None] | None = None
    """Called with the seconds from spawn to ready (the replica start metric)."""
    allow_unsafe_pickle: bool = False
    """The server-wide opt-in (KFBOX_ALLOW_UNSAFE_PICKLE); a service can opt in by annotation."""
    queue_per_replica: int = 128
    drain_seconds: float = 30.0
    hpa_downscale_stabilization: float = 300.0
    """cpu and memory scale down only to the highest recommendation of this many seconds (the HPA's
    stabilization window: :mod:`kfbox.serving.autoscaler`)."""
    """How long a stopping replica's requests get to finish before it is stopped."""
    """Requests held per ready replica (one counted while none is ready) before the gateway answers 503
    at once: past that a replica only queues, and an overloaded service must say so fast, never time out."""
    emit: Callable[[str, str, str], None] | None = None
    """Records a Kubernetes Event about the service: (reason, message, type) (:mod:`kfbox.serving.events`)."""
    title: str = ""
    """The replicas' process title in ``ps`` (``kfbox replica NAMESPACE/NAME rev N``); empty: left as started."""
    release: Callable[[int], Awaitable[None]] | None = None
    """Awaited before a replica (by port) stops: an external data plane takes it out of its routes and lets
    the requests it sent there finish (kfbox.serving.haproxy)."""
    forget: Callable[[int], None] | None = None
    """Called once a replica (by port) that was ready died, or was stopped as broken: no request sent there can
    still finish, so an external data plane reuses its place at once (kfbox.serving.haproxy)."""


class ReplicaPool:
    def __init__(self, config: PoolConfig, spec: PredictorSpec, resolve: Callable[[str], Path],
                 launcher: ReplicaLauncher) -> None:
        self.config = config
        self.launcher = launcher
        self.spec = spec
        self.resolve = resolve
        self.replicas: list[Replica] = []
        self.autoscaler = Autoscaler.of(spec, spec.scale_window if spec.scale_window is not None
                                        else config.scale_window,
                                        downscale_stabilization=config.hpa_downscale_stabilization)
        # a new revision starts one replica, as KServe does, or its initial-scale
        self.desired = max(spec.min_replicas, min(spec.initial_scale, spec.max_replicas), 1)
        self.scaled_to = self.desired
        """The replica count of the last ScaledUp/ScaledDown event (a waiting request raises :attr:`desired` too)."""
        self.model_path: Path | None = None
        self.failure: str | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.inflight = 0
        self.external_inflight = 0
        """Requests in flight through an external data plane (HAProxy), as last read from its stats."""
        self.waiting = 0
        self.last_request_at = time.monotonic()
        self.admitted = 0
        """Requests sent to this revision so far, through every door (:meth:`admit`): the autoscaler's rps."""
        self.ever_ready = False
        self.initialized = spec.initial_scale <= 1
        """All of ``initial-scale``'s replicas were ready at once (Knative's "scale target initialized"): until
        then the revision is not Ready, takes no traffic from another and is not rolled out to, as on Knative,
        which marks a revision Ready only then. Standard mode has no initial scale: True from the start."""
        self.closed = False
        self.upstreams = Upstreams()
        self._indexes = itertools.count(1)
        self._picks = 0
        self._draining: set[asyncio.Task[None]] = set()
        self.limit = spec.container_concurrency
        """Requests a replica is sent at once at most (0: no limit)."""
        self.queued = 0
        """Requests waiting in :meth:`wait_slot` for a replica below :attr:`limit`."""
        self._slot_waiters: deque[asyncio.Future[None]] = deque()

    def _event(self, reason: str, message: str, type_: str = "Normal") -> None:
        if self.config.emit is not None:
            self.config.emit(reason, f"Revision {self.config.revision}: {message}", type_)

    def rescale(self, spec: PredictorSpec) -> None:
        """Take a Standard-mode revision's new HPA fields (bounds, metric, target) in place: its replicas keep
        running and the next :meth:`tick` scales to the new bounds by the usual rules."""
        self.spec = spec
        self.autoscaler.retarget(spec)  # no Event of its own: a cluster's HPA records none for a spec change

    # --- routing -------------------------------------------------------------------------
    def pick(self) -> Replica | None:
        """The ready replica with the fewest requests in flight; among equals, the one picked last.

        At low load one replica then serves every request, its caches and the gateway's keep-alive
        connection to it hot (a rotation among idle replicas sends each request to the coldest one);
        as soon as it is busy the next request goes to an idle one, so load still spreads. Never one at the
        revision's ``containerConcurrency`` (:attr:`limit`): None when every ready replica is there.
        """
        best: Replica | None = None
        for replica in self.replicas:
            if not replica.ready or (self.limit and replica.inflight >= self.limit):
                continue
            if best is None or replica.inflight < best.inflight or (replica.inflight == best.inflight
                                                                   and replica.picked > best.picked):
                best = replica
        if best is not None:
            self._picks += 1
            best.picked = self._picks
        return best

    @property
    def ready_count(self) -> int:
        return sum(1 for r in self.replicas if r.ready)

    @property
    def full(self) -> bool:
        """True when another request would only wait in a queue (:attr:`PoolConfig.queue_per_replica`)."""
        return self.inflight >= self.config.queue_per_replica * max(1, self.ready_count)

    async def wait_ready(self, timeout: float, wake: Callable[[], None]) -> Replica | None:
        """Hold a request while replicas start (scale from zero); None on failure or timeout."""
        self.waiting += 1
        self.desired = max(self.desired, 1)
        wake()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                replica = self.pick()
                if replica is not None or self.failure is not None:
                    return replica
                await asyncio.sleep(0.02)
            return None
        finally:
            self.waiting -= 1

    async def wait_slot(self, timeout: float = SLOT_TIMEOUT) -> Replica | None:
        """Hold a request while every ready replica has :attr:`limit` requests in flight, as Knative's
        queue-proxy holds it; the replica it may go to, or None after ``timeout`` or once no replica is ready
        (the caller answers as for any request with no replica)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.queued += 1
        try:
            while True:
                replica = self.pick()
                if replica is not None or not self.ready_count or self.closed or loop.time() >= deadline:
                    return replica
                # a future of our own, not asyncio.wait_for: Python 3.11's swallows a cancellation that comes
                # after the wake-up, and a client that left would still be sent
                waiter: asyncio.Future[None] = loop.create_future()
                self._slot_waiters.append(waiter)
                timer = loop.call_later(deadline - loop.time(), _settle, waiter)
                try:
                    await waiter
                except asyncio.CancelledError:  # the client left: a wake-up meant for this request goes on
                    if waiter.done() and not waiter.cancelled():
                        self._wake(1)
                    raise
                finally:
                    timer.cancel()
                    if waiter in self._slot_waiters:
                        self._slot_waiters.remove(waiter)
        finally:
            self.queued -= 1

    def release(self, replica: Replica) -> None:
        """A request sent to ``replica`` ended: one waiting for a slot (:meth:`wait_slot`) may take it."""
        replica.inflight -= 1
        self._wake(1)

    def _wake(self, count: int | None = None) -> None:
        """Let ``count`` requests waiting for a slot (None: all) look again, oldest first."""
        while self._slot_waiters and (count is None or count > 0):
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count = None if count is None else count - 1

    def admit(self, now: float, count: int = 1) -> None:
        """``count`` requests were sent to this revision: it is in use (no scale to zero for a window), and they
        count toward its requests per second."""
        self.last_request_at = now
        self.admitted += count

    def _sample(self, now: float) -> float:
        """The autoscaler's metric now (:mod:`kfbox.serving.autoscaler`): for cpu and memory, the ready replicas'
        use as a percent of one replica's request (a replica still loading its model does not count, as the
        HPA leaves out pods that are not ready)."""
        metric = self.spec.scale_metric
        if metric == "rps":
            return float(self.admitted)
        if metric not in UTILIZATION_METRICS:
            return float(self.inflight + self.external_inflight)
        used = 0.0
        for replica in self.replicas:
            reading = read_proc(replica.child.pid) if replica.ready else None
            if reading is None:
                replica.cpu_mark = None
                continue
            seconds, rss = reading
            if metric == "memory":
                used += rss
            elif replica.cpu_mark is not None and now > replica.cpu_mark[1]:
                used += (seconds - replica.cpu_mark[0]) / (now - replica.cpu_mark[1])
            replica.cpu_mark = (seconds, now)
        return 100.0 * used / self.spec.scale_request

    # --- reconciling ---------------------------------------------------------------------
    async def tick(self, now: float) -> None:
        if self.closed:
            return
        ready = {r.index for r in self.replicas if r.ready}
        await self._reap(now)
        await self._probe(now)
        if self._slot_waiters and ready != {r.index for r in self.replicas if r.ready}:
            self._wake()  # a replica became ready or went away: the waiting requests look again
        self.autoscaler.observe(now, self._sample(now))
        current = len(self.replicas)
        self.desired = self.autoscaler.desired(now, current, self.last_request_at, self.ready_count)
        if self.waiting or (not self.ever_ready and self.failure is None):
            self.desired = max(self.desired, 1)  # a request waits, or the revision has yet to come up once
        if self.desired != self.scaled_to:
            why = "a waiting request" if self.waiting and not self.scaled_to else f"metric {self.spec.scale_metric}"
            if self.desired == self.spec.min_replicas > self.scaled_to:
                why = f"minReplicas {self.spec.min_replicas}"
            elif self.desired == self.spec.max_replicas < self.scaled_to:
                why = f"maxReplicas {self.spec.max_replicas}"
            self._event("ScaledUp" if self.desired > self.scaled_to else "ScaledDown",
                        f"scaled from {self.scaled_to} to {self.desired} replicas on {why}")
            self.scaled_to = self.desired
        if current < self.desired and now >= self.retry_at:
            await self._ensure_model_path(now)
            if self.model_path is not None or self.spec.model_format == "custom":
                for _ in range(self.desired - current):
                    replica = await asyncio.to_thread(self._spawn, now)
                    if self.closed:  # closed while spawning (a new revision, a delete): don't leak it
                        await asyncio.to_thread(replica.child.stop, 1.0)
                        return
                    self.replicas.append(replica)
                    self._event("ReplicaStarted", f"started replica {replica.index} (pid {replica.child.pid})")
        elif current > self.desired:
            for replica in stop_order(self.replicas)[: current - self.desired]:
                self.replicas.remove(replica)
                self._drain(replica)

    async def _reap(self, now: float) -> None:
        for replica in list(self.replicas):
            if replica.child.alive and not replica.broken and not (
                    replica.ready_at is None and now - replica.started_at > self.config.start_timeout):
                continue
            self.replicas.remove(replica)
            self.upstreams.forget(replica.port)
            if replica.ready_at is None:
                reason = (failure_reason(replica.child.log_path) if not replica.child.alive else
                          f"the replica did not become ready within {self.config.start_timeout:.0f}s")
                self._record_failure(now, reason)
                self.model_path = None  # resolve (and check) the storage URI again: its links may have changed
            if replica.ready_at is not None:
                self._event("ReplicaDied", f"replica {replica.index} " + (
                    "could not be reached; replacing it" if replica.child.alive else "exited; replacing it"),
                    "Warning")
            await asyncio.to_thread(replica.child.stop, 1.0)
            if replica.ready_at is not None and self.config.forget is not None:
                self.config.forget(replica.port)

    async def _probe(self, now: float) -> None:
        starting = [r for r in self.replicas if r.ready_at is None]
        results = await asyncio.gather(*(self._is_ready(r) for r in starting))
        for replica, ok in zip(starting, results, strict=True):
            if ok:
                replica.ready_at = now
                if self.config.on_replica_ready is not None:
                    self.config.on_replica_ready(now - replica.started_at)
                self.ever_ready = True
                self._event("ReplicaReady", f"replica {replica.index} is ready ({now - replica.started_at:.1f}s)")
                self.failure = None
                self.failures = 0
        if not self.initialized and self.ready_count >= min(self.spec.initial_scale, self.spec.max_replicas):
            self.initialized = True

    async def _is_ready(self, replica: Replica) -> bool:
        head = f"GET /v2/health/ready HTTP/1.1\r\nhost: 127.0.0.1:{replica.port}\r\n\r\n".encode()
        try:
            connection = await self.upstreams.open(replica.port)
            await connection.exchange(head, b"", PROBE_TIMEOUT)
            await connection.read_all(PROBE_TIMEOUT)
        except (UpstreamError, TimeoutError):
            return False
        self.upstreams.release(replica.port, connection)
        return connection.status == 200

    async def _ensure_model_path(self, now: float) -> None:
        if self.model_path is not None or self.spec.storage_uri is None:
            return
        try:
            self.model_path = await asyncio.to_thread(self.resolve, self.spec.storage_uri)
        except Exception as exc:  # noqa: BLE001 - any resolution failure is shown as the reason
            self._record_failure(now, f"storageUri {self.spec.storage_uri}: {getattr(exc, 'message', exc)}")

    def _record_failure(self, now: float, reason: str) -> None:
        self._event("ModelLoadFailed", reason, "Warning")  # the same reason again: its count grows
        self.failure = reason
        self.failures += 1
        self.retry_at = now + min(MAX_BACKOFF, 2.0 ** self.failures)  # 2s, 4s, 8s... like CrashLoopBackOff

    def _spawn(self, now: float) -> Replica:
        index = next(self._indexes)
        port = free_port()
        spec = self.spec
        argv = ["--name", self.config.model_name, "--format", spec.model_format, "--port", str(port)]
        if self.model_path is not None:
            argv += ["--model-path", str(self.model_path)]
        if spec.model_class:
            argv += ["--model-class", spec.model_class]
        if spec.python_path:
            argv += ["--python-path", spec.python_path]
        grpc_port = free_port() if spec.enable_grpc else 0
        if grpc_port:
            argv += ["--grpc-port", str(grpc_port)]
        if spec.allow_unsafe_pickle or self.config.allow_unsafe_pickle:
            argv += ["--allow-unsafe-pickle"]
        if self.config.title:
            argv += ["--title", self.config.title]
        log_path = self.config.log_dir / f"{self.config.revision}-{index}.log"
        child = self.launcher.launch(argv, log_path, spec.env)
        return Replica(index=index, port=port, child=child, started_at=now, grpc_port=grpc_port)

    def _drain(self, replica: Replica) -> None:
        async def drain() -> None:
            if self.config.release is not None:
                await self.config.release(replica.port)
            deadline = time.monotonic() + self.config.drain_seconds
            while replica.inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(replica.child.stop, 2.0)
            self.upstreams.forget(replica.port)

        task = asyncio.get_running_loop().create_task(drain())
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    def delete(self, replica: Replica) -> None:
        """Stop ``replica`` as ``kubectl delete pod`` asks: out of the pool at once, its requests drained first; the
        next tick starts a replacement, as a ReplicaSet replaces a deleted pod."""
        self.replicas.remove(replica)
        self._event("ReplicaDeleted", f"replica {replica.index} was deleted; replacing it")
        self._drain(replica)

    async def close(self) -> None:
        """Stop every replica (draining in-flight requests briefly) and the HTTP client."""
        self.closed = True
        self._wake()
        for replica in self.replicas:
            self._drain(replica)
        self.replicas = []
        if self._draining:
            await asyncio.gather(*self._draining, return_exceptions=True)
        self.upstreams.close()

    def children(self) -> list[ChildProcess]:
        return [replica.child for replica in self.replicas]


def stop_order(replicas: list[Replica]) -> list[Replica]:
    """The replicas in the order a scale down stops them: those not ready (still starting) first, then the one
    ready most recently, then the newest, as a ReplicaSet picks the pods it deletes (``ActivePodsWithRanks`` in
    Kubernetes' ``controller_utils.go``; Knative scales down through the same Deployment). The replicas that have
    served longest stay. Requests in flight do not change the order, as Kubernetes does not look at them: a
    stopped replica's requests still finish first (:meth:`ReplicaPool._drain`).

    Kubernetes' ``LogarithmicScaleDown`` compares ready times in power-of-two buckets and breaks ties at random;
    kfbox compares them exactly, so the order is the same every time. A replica is never restarted in place (a
    dead one is replaced), so the restart count, the rule between ready time and age, is 0 for all.
    """
    return sorted(replicas, key=lambda r: (r.ready, -r.ready_at if r.ready and r.ready_at is not None else 0.0,
                                           -r.index))


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def failure_reason(log_path: Path) -> str:
    """The replica's own failure line, else the last lines of its log."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return f"the replica exited; no log at {log_path}"
    for line in reversed(lines):
        if line.startswith(FAILURE_PREFIX):
            return line[len(FAILURE_PREFIX):].strip()
    tail = " | ".join(line.strip() for line in lines[-3:] if line.strip())
    return f"the replica exited: {tail or 'no output'} (log: {log_path})"
