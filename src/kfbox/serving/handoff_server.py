"""The server's side of the connection hand-off (``kfbox up --data-plane handoff``; :mod:`kfbox.serving.handoff`).

The server's protocol offers each new connection's first bytes (:class:`kfbox.server.protocol.Door`);
:meth:`HandoffPlane.offer` passes the connection to a ready replica when its first request is plain, for a
service whose requests need no per-request decision of kfbox's:

- one revision takes all its traffic (a canary split weighs each request);
- no ``containerConcurrency`` (a per-request limit kfbox's gateway enforces);
- its replicas run no user code: no ``--model_class`` of the user's, no ``python_path``, no unrestricted
  unpickling. A replica reads the requests of a handed connection itself, ``Authorization`` header included,
  and the platform's token must never reach a user's code (the gateway strips it);
- a ready replica with a hand-off socket: the one with the fewest connections (least connections, as IPVS).

Each replica gets its own ``SOCK_SEQPACKET`` pair, its end sent over the replica's warm channel once. On it the
replica reports, twice a second while it has work, what kfbox's gateway would have counted (requests by status,
their latencies, requests in flight, open connections), which go into the ``kfbox_serving_*`` metrics, the
autoscaler (in flight, requests per second) and least-connections; and it hands back a connection whose next
request it must not answer, which the server's protocol then serves like any other (:meth:`Door.adopt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import os
import socket
import time
from typing import Any

from kfbox.config import Settings
from kfbox.errors import Unavailable
from kfbox.server import warm
from kfbox.server.hosts import HostAllowlist
from kfbox.server.protocol import Door
from kfbox.serving import handoff
from kfbox.serving.deployment import Deployment, traffic_split
from kfbox.serving.forkserver import ForkedReplica
from kfbox.serving.gateway import PREFIX, Series, model_host
from kfbox.serving.manager import ServingManager
from kfbox.serving.pool import Replica, ReplicaPool

log = logging.getLogger(__name__)
KFBOX_CLASSES = "kfbox."
"""Model classes of kfbox's own (not a user's code)."""


@dataclasses.dataclass(eq=False)
class Link:
    """A replica's hand-off socket and what it last reported."""

    replica: Replica
    pool: ReplicaPool
    key: tuple[str, str]
    sock: socket.socket
    handed: int = 0
    """Connections sent to it; with the report's ``adopted`` and ``open``, its current count."""
    adopted: int = 0
    open: int = 0
    inflight: int = 0

    @property
    def connections(self) -> int:
        return self.open + self.handed - self.adopted


class HandoffPlane:
    """Passes plain connections to replicas and takes in what they report and give back."""

    def __init__(self, manager: ServingManager, settings: Settings, door: Door) -> None:
        self.manager = manager
        self.door = door
        self.hosts = HostAllowlist.from_settings(settings)
        self.expected = f"Bearer {settings.token}".encode() if settings.token else None
        self.authorization = handoff.digest(self.expected) if self.expected is not None else None
        self.max_body = settings.serving_max_body_bytes
        self.timeouts = (max(settings.http_header_timeout, 0.0), max(settings.http_body_timeout, 0.0))
        self.queue = settings.serving_queue_per_replica
        self.per_client = max(settings.max_connections_per_client, 0)
        self.suffix = "." + settings.ingress_domain.lower()
        self.links: dict[int, Link] = {}
        self.series: dict[tuple[str, str], Series] = {}
        self.handed_off = 0

    def start(self) -> None:
        self.door.offer = self.offer
        self.manager.handoff_refusal = self.refusal

    def stop(self) -> None:
        self.door.offer = None
        self.manager.handoff_refusal = None
        for link in list(self.links.values()):
            self._unlink(link)

    @property
    def health(self) -> str:
        return f"handoff: {self.handed_off} connections handed to replicas, {len(self.links)} replicas linked"

    # --- new connections ------------------------------------------------------------------------------------------
    def offer(self, transport: asyncio.Transport, data: bytes) -> bool:
        """Pass the connection to a replica when its first request is plain and its service's replicas may take it;
        False: the server serves it."""
        if len(data) > handoff.MAX_MESSAGE_BYTES - 1024:
            return False
        head = handoff.read_head(data)
        if head is None or not self._authorized(head.authorization) or not self.hosts.allows(head.host):
            return False
        route = self._route(head)
        if route is None:
            return False
        namespace, name, prefix = route
        deployment = self.manager.deployments.get((namespace, name))
        if deployment is None or head.content_length > self.max_body:
            return False
        if self.refusal(deployment) is not None:
            return False
        (number,) = traffic_split(deployment.record)
        pool = deployment.pools[number]
        link = self._pick(pool, deployment.key)
        sock = transport.get_extra_info("socket")
        if link is None or sock is None:
            return False
        grant = handoff.Grant(head.host, prefix, self.authorization, self.max_body, pool.config.revision,
                              *self.timeouts, self.queue, f"{namespace}/{name}", self.per_client)
        if not handoff.send(link.sock, {"connection": grant.to_json()}, data, sock.fileno()):
            return False
        link.handed += 1
        self.handed_off += 1
        transport.abort()  # closes only this process's descriptor: the replica holds the connection now
        return True

    def refusal(self, deployment: Deployment) -> str | None:
        """Why kfbox keeps this service's connections; None when a plain one goes to a ready replica."""
        split = traffic_split(deployment.record)
        if len(split) != 1:
            return "a canary split: kfbox weighs each request"
        pool = deployment.pools.get(next(iter(split)))
        if pool is None or not pool.ready_count:
            return "no replica is ready: kfbox holds the requests while one starts"
        if pool.limit:
            return f"containerConcurrency {pool.limit}: kfbox's gateway queues the requests past it"
        if runs_user_code(pool):
            return ("its replicas run your code (a model class, python_path or unrestricted unpickling), which "
                    "must never read the token that every request on a connection carries")
        return None

    def _authorized(self, authorization: bytes | None) -> bool:
        if self.expected is None:
            return True
        return authorization is not None and hmac.compare_digest(authorization, self.expected)

    def _route(self, head: handoff.Head) -> tuple[str, str, bytes] | None:
        """(namespace, name, path prefix) as host routing and the gateway read them."""
        found = model_host(head.host or b"", self.suffix)
        if found is not None:
            return found[0], found[1], b""
        if not head.target.startswith(PREFIX.encode() + b"/"):
            return None
        parts = head.target.split(b"/", 4)
        if len(parts) != 5 or not parts[2] or not parts[3] or b"?" in parts[2] + parts[3]:
            return None
        return parts[2].decode("latin-1"), parts[3].decode("latin-1"), b"/".join(parts[:4])

    def _pick(self, pool: ReplicaPool, key: tuple[str, str]) -> Link | None:
        best: Link | None = None
        for replica in pool.replicas:
            if not replica.ready:
                continue
            link = self.links.get(replica.port)
            if link is None or link.replica is not replica:
                link = self._link(replica, pool, key)
            if link is not None and (best is None or link.connections < best.connections):
                best = link
        return best

    def _link(self, replica: Replica, pool: ReplicaPool, key: tuple[str, str]) -> Link | None:
        """Give the replica its hand-off socket over its warm channel; None if it has no channel (started cold
        without one) or is gone."""
        channel = channel_of(replica)
        if channel is None:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            sent = channel.send_with_fd({"handoff": {}}, theirs.fileno())
        if not sent:
            ours.close()
            return None
        ours.setblocking(False)
        old = self.links.get(replica.port)
        if old is not None:
            self._unlink(old)
        link = self.links[replica.port] = Link(replica, pool, key, ours)
        asyncio.get_running_loop().add_reader(ours.fileno(), self._read, link)
        return link

    # --- what replicas send -----------------------------------------------------------------------------------
    def _read(self, link: Link) -> None:
        while True:
            try:
                got = handoff.receive(link.sock)
            except EOFError:  # the replica exited
                self._unlink(link)
                return
            if got is None:
                return
            message, data, fd = got
            if "report" in message:
                self._report(link, message["report"])
            elif "back" in message and fd is not None:
                self._take_back(fd, data)
            elif fd is not None:
                os.close(fd)

    def _report(self, link: Link, report: dict[str, Any]) -> None:
        try:
            requests = {int(status): int(n) for status, n in report.get("requests", {}).items()}
            latencies = [float(s) for s in report.get("latencies", [])]
            inflight, adopted, opened = int(report["inflight"]), int(report["adopted"]), int(report["open"])
        except (KeyError, TypeError, ValueError):
            return
        link.adopted, link.open = adopted, opened
        deployment = self.manager.deployments.get(link.key)
        if deployment is not None:
            series = Series.of(self.series, self.manager.metrics, deployment)
            for status, n in requests.items():
                series.requests(status).inc(n)
            for seconds in latencies:
                series.latency.observe(seconds)
            self._inflight(link, inflight, series)
        link.pool.admit(time.monotonic(), sum(requests.values()))

    def _inflight(self, link: Link, inflight: int, series: Series | None) -> None:
        change = inflight - link.inflight
        if change:
            link.inflight = inflight
            link.pool.external_inflight += change
            if series is not None:
                series.inflight.inc(change)

    def _take_back(self, fd: int, data: bytes) -> None:
        sock = socket.socket(fileno=fd)
        if self.door.adopt is None:
            sock.close()
            return
        self.door.adopt(sock, data)

    def _unlink(self, link: Link) -> None:
        if self.links.get(link.replica.port) is link:
            del self.links[link.replica.port]
        deployment = self.manager.deployments.get(link.key)
        series = self.series.get(link.key) if deployment is not None else None
        self._inflight(link, 0, series)
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(link.sock.fileno())
        link.sock.close()


def preflight() -> None:
    """A clear refusal where a connection cannot be passed to another process: replicas need Unix sockets that
    carry descriptors and a warm channel (Linux and macOS; not Windows)."""
    if not (warm.supported() and hasattr(socket, "send_fds") and hasattr(socket, "SOCK_SEQPACKET")):
        raise Unavailable("The hand-off data plane passes connections over Unix sockets (SCM_RIGHTS), which this "
                          "platform lacks. Run without --data-plane handoff (the Python gateway serves).")


def runs_user_code(pool: ReplicaPool) -> bool:
    """Whether the replicas may run a user's code: then a connection, and the token in its requests, stays here."""
    spec = pool.spec
    return bool((spec.model_class and not spec.model_class.startswith(KFBOX_CLASSES)) or spec.python_path
                or spec.allow_unsafe_pickle or pool.config.allow_unsafe_pickle)


def channel_of(replica: Replica) -> warm.Channel | None:
    child = replica.child
    if isinstance(child, warm.WarmChild):
        return child.channel
    if isinstance(child, ForkedReplica):
        return child.channel
    return None
