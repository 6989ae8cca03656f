"""The inference gateway: ``/serving/{namespace}/{name}/...`` and ``Host: name.namespace.domain``.

It proxies V1/V2 requests to a ready replica of the revision the traffic split picks, counts
in-flight requests for the autoscaler, holds a request while a scaled-to-zero revision cold
starts or while every ready replica has ``containerConcurrency`` requests in flight
(:meth:`ReplicaPool.wait_slot`), retries on another replica when one is dead (the request never
reached it, or it is idempotent: a GET, or an inference call, which has no side effects), and
answers 503 at once when no replica can serve or the revision's queue is full
(``KFBOX_SERVING_QUEUE_PER_REPLICA``).

It is plain ASGI, the innermost middleware: host routing, the guard and token auth have run
(auth is decided on the ``/serving/...`` route that is served), FastAPI's routing never sees a
gateway request. In the running server a gateway request does not even pass the rest of the
stack: :class:`HostRouting`'s shortcut (:mod:`kfbox.server.shortcut`) has the server's protocol run
per-route metrics -> guard -> body limit -> host routing -> token auth -> gateway, the same classes
in the same order, in uvicorn's request cycle, with the reply's head and body in one write; the
full app (in-process tests, any other request) is unchanged.

Bodies pass through as bytes, headers as they came (less hop-by-hop ones and the platform's own
credentials), and the reply is streamed: a chunked or event-stream reply (tokens of a generate
endpoint) reaches the client as the replica produces it.

Why no external data plane (as KServe drives Istio/Envoy): HAProxy from Debian costs far less CPU
per request. In front of the same kserve replica: 0.25 ms against this path's 0.59 on a quiet
machine before the short lane (``benchmarks/gateway.py --haproxy``). For the hop alone, in front
of a replica that costs nothing (``benchmarks/gateway_hop.py``, interleaved, 2 cores at load 28):
HAProxy 0.044 ms at c=1 and 0.032 at c=8; this path 0.30 and 0.21, down from 0.39 and 0.24 before
the short lane. What is left here is uvicorn's request cycle, asyncio's task and future per
request, the checks and the gateway's own Python; the syscalls are the same as HAProxy's. But
kfbox would have to re-create in HAProxy's configuration everything above (token auth on the
normalised route, host routing, the canary split, holding requests during a cold start, the
overload bound, KServe's error bodies, the ``kfbox_serving_*`` metrics) and run a second process
everywhere kfbox runs. So it is opt-in, with this gateway as the fallback and the default:
``kfbox up --data-plane haproxy`` (:mod:`kfbox.serving.haproxy`) has kfbox write HAProxy's configuration
from the ready replicas and the canary weights, on an ingress port of its own, and HAProxy send a
request straight to a replica only when it carries the exact token and nothing unusual, for a service
with a ready replica; anything else (cold starts included) comes on to this gateway. The overload
bound, KServe's error bodies and the ``kfbox_serving_*`` metrics are kept there
(:mod:`kfbox.serving.haproxy_config` says how, and what differs); ``benchmarks/data_plane.py`` measures
the three paths in one run.

What a request costs here, in front of any replica: ~370k user-space instructions (callgrind),
spread thin. By cProfile's shares of the Python (syscalls aside): uvicorn's protocol and request
cycle about a fifth, this module a sixth, :mod:`kfbox.serving.upstream` a twelfth, the
``kfbox_serving_*`` and per-route metrics a fourteenth, the guard, body limit and auth a
sixteenth; no function above ~5%.
The CPU time those instructions take depends on the wake-ups around them far more than on their
number (``benchmarks/gateway.py``'s docstring): two per request is the floor, the request and the
reply, which kfbox's replicas send in one write (:mod:`kfbox.server.coalesce`).

Every error the gateway answers has KServe's body, ``{"error": "..."}``, with one
``content-type: application/json``: the replica's own errors pass through; FastAPI's
``{"detail": ...}`` forms a replica answers for 405 (with its ``allow`` header) and 422 are
reshaped to it, and so are the gateway's own 404/502/503/504 and the platform's 401/413.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any
from urllib.parse import quote

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfbox.serving.deployment import Deployment
from kfbox.serving.error_body import kserve_error_body
from kfbox.serving.manager import ServingManager
from kfbox.serving.metrics import ServingMetrics
from kfbox.serving.pool import ReplicaPool
from kfbox.serving.upstream import Connection, UpstreamError

PREFIX = "/serving"
MAX_ATTEMPTS = 3
REQUEST_TIMEOUT = 300.0
"""Seconds a replica may take to start its reply, and may then pause between two pieces of it."""
IDEMPOTENT = ("GET", "HEAD", "OPTIONS")
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
                        b"upgrade", b"content-length"})
DROP_REQUEST = HOP_BY_HOP | {b"host", b"expect", b"authorization", b"cookie", b"proxy-authorization"}
"""Not sent on: the hop's own headers, and the platform's credentials (a replica runs the user's model code)."""
DROP_RESPONSE = HOP_BY_HOP | {b"date", b"server"}
"""uvicorn writes its own ``date``/``server``; a second copy would be sent twice."""
JSON = (b"content-type", b"application/json")
PATH_SAFE = "/:@!$&'()*+,;=-._~"
PLAIN_PATH = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=\-._~]*")
"""A path ``quote(path, safe=PATH_SAFE)`` leaves as it is (the usual ``/v1/models/m:predict``): not quoted."""


class _GatewayRoute:
    """What ``scope["route"]`` holds for a gateway request: the per-route metrics read ``path_format``."""

    path_format = PREFIX + "/{namespace}/{name}/{path}"


ROUTE = _GatewayRoute()


class HostRouting:
    """``Host: {name}.{namespace}.{domain}`` becomes ``/serving/{namespace}/{name}/<path>``, as KServe's ingress."""

    def __init__(self, app: ASGIApp, domain: str) -> None:
        self.app = app
        self.suffix = "." + domain.lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (path := self.routed(scope)) is not None:
            # in place: the outer middleware (per-route metrics) reads the route set inside
            scope["path"], scope["raw_path"] = path, path.encode()
        await self.app(scope, receive, send)

    def routed(self, scope: Scope) -> str | None:
        """The gateway path a model's ``Host`` names, or None when the Host is not a model's."""
        found = model_host(next((v for k, v in scope["headers"] if k == b"host"), b""), self.suffix)
        return None if found is None else f"{PREFIX}/{found[0]}/{found[1]}{scope['path']}"

    def claims(self, scope: Scope) -> bool:
        """A request the gateway answers (after host routing): the test of its :class:`Shortcut`."""
        return gateway_parts(self.routed(scope) or scope["path"]) is not None


def model_host(host: bytes, suffix: str) -> tuple[str, str] | None:
    """(namespace, name) that ``Host: {name}[-predictor].{namespace}{suffix}`` names (``suffix``: ``.`` and the
    ingress domain, lower case); None for any other Host. Host routing and the connection hand-off read it so."""
    hostname = host.decode("latin-1").lower().rsplit(":", 1)[0]
    if hostname.endswith(suffix):
        labels = hostname[: -len(suffix)].split(".")
        if len(labels) == 2 and all(labels):
            return labels[1], labels[0].removesuffix("-predictor")
    return None


def gateway_parts(path: str) -> list[str] | None:
    """``/serving/{namespace}/{name}/{rest}`` split as ``["", "serving", namespace, name, rest]``; None otherwise."""
    if not path.startswith("/serving/"):
        return None
    parts = path.split("/", 4)
    return parts if len(parts) == 5 and parts[2] and parts[3] else None


class Series:
    """One InferenceService's labelled metric children, looked up once: ``labels()`` took longer than the
    updates themselves, three times a request. Kept per :class:`Deployment` object, so a service deleted
    and created again (its gauges removed by ``forget``) gets children of its own."""

    def __init__(self, metrics: ServingMetrics, deployment: Deployment) -> None:
        self.metrics = metrics
        self.deployment = deployment
        self.inflight: Gauge = metrics.inflight.labels(*deployment.key)
        self.latency: Histogram = metrics.latency.labels(*deployment.key)
        self.by_status: dict[int, Counter] = {}

    @classmethod
    def of(cls, cache: dict[tuple[str, str], Series], metrics: ServingMetrics, deployment: Deployment) -> Series:
        """The deployment's series in ``cache``, made on first use and again for a service created anew."""
        series = cache.get(deployment.key)
        if series is None or series.deployment is not deployment:
            series = cache[deployment.key] = cls(metrics, deployment)
        return series

    def requests(self, status: int) -> Counter:
        counter = self.by_status.get(status)
        if counter is None:
            counter = self.by_status[status] = self.metrics.requests.labels(*self.deployment.key, str(status))
        return counter


class Gateway:
    """ASGI middleware serving ``/serving/{namespace}/{name}/{path}``; anything else goes on to ``app``."""

    def __init__(self, app: ASGIApp, manager: ServingManager) -> None:
        self.app = app
        self.manager = manager
        self.series: dict[tuple[str, str], Series] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = gateway_parts(scope["path"]) if scope["type"] == "http" else None
        if parts is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = ROUTE
        await self.proxy(scope, receive, send, parts[2], parts[3], "/" + parts[4])

    async def proxy(self, scope: Scope, receive: Receive, send: Send, namespace: str, name: str, rest: str) -> None:
        deployment = self.manager.deployments.get((namespace, name))
        if deployment is None:
            self.series.pop((namespace, name), None)
            await reply_error(send, 404, f"InferenceService {namespace}/{name} does not exist. "
                                         "List them with: kfbox serve list")
            return
        series = Series.of(self.series, self.manager.metrics, deployment)
        body = await read_body(receive)
        started = time.perf_counter()
        series.inflight.inc()
        status = 500
        try:
            status = await self.forward(scope, receive, send, namespace, name, rest, body)
        finally:
            series.inflight.dec()
            series.requests(status).inc()
            series.latency.observe(time.perf_counter() - started)

    async def forward(self, scope: Scope, receive: Receive, send: Send, namespace: str, name: str, rest: str,
                      body: bytes) -> int:
        """Send the request to a replica and relay its reply; returns the status the client got."""
        chosen = self.manager.deployments[(namespace, name)].choose()
        if chosen is None:
            return await reply_error(send, 503, f"InferenceService {namespace}/{name} has no revision to serve yet.")
        pool = chosen[1]
        revision = pool.config.revision
        if pool.full:
            return await reply_error(send, 503, f"InferenceService {namespace}/{name} is overloaded: {pool.inflight} "
                                                f"requests are waiting for {revision}. Retry shortly, or raise "
                                                "maxReplicas.", [(b"retry-after", b"1")])
        pool.admit(time.monotonic())
        pool.inflight += 1
        try:
            return await self._attempts(scope, receive, send, pool, namespace, name, rest, body, revision)
        finally:
            pool.inflight -= 1

    async def _attempts(self, scope: Scope, receive: Receive, send: Send, pool: ReplicaPool, namespace: str,
                        name: str, rest: str, body: bytes, revision: str) -> int:
        replica = pool.pick()
        if replica is None and pool.ready_count:  # every ready replica at its containerConcurrency: wait, bounded
            replica = await pool.wait_slot()
        elif replica is None and pool.failure is None:  # starting or scaled to zero: wait, bounded
            replica = await self._cold_start(pool, namespace, name)
        method: str = scope["method"]
        line, headers = request_head(scope, rest, len(body))
        retryable = method in IDEMPOTENT or is_inference(rest)
        fresh_tries = 1  # a kept-alive connection the replica closed just then: once more on a new one
        attempts = 0
        while replica is not None and attempts < MAX_ATTEMPTS:
            attempts += 1
            target = replica
            target.inflight += 1
            try:
                connection = await pool.upstreams.open(target.port)
                try:
                    head = b"%bhost: 127.0.0.1:%d\r\n%b" % (line, target.port, headers)
                    await connection.exchange(head, body, REQUEST_TIMEOUT, head_only=method == "HEAD")
                except UpstreamError as exc:
                    connection.close()
                    if exc.reused and not exc.received and fresh_tries and retryable:
                        fresh_tries -= 1
                        attempts -= 1
                        continue
                    if not retryable:
                        return await reply_error(send, 502, f"Replica of {revision} failed during the request: "
                                                            f"{exc}")
                    target.broken = True  # the connection broke; inference has no side effects: send it elsewhere
                    replica = pool.pick()
                    continue
                return await relay(connection, pool, target.port, receive, send, revision)
            except UpstreamError as exc:
                if exc.connected:
                    raise
                target.broken = True  # never reached it: safe to send elsewhere
                replica = pool.pick()
            except TimeoutError:
                return await reply_error(send, 504, f"Replica of {revision} did not answer in time.")
            finally:
                pool.release(target)
        reason = (pool.failure or "no replica is ready").rstrip(".")
        return await reply_error(send, 503, f"InferenceService {namespace}/{name} cannot serve ({revision}): "
                                            f"{reason}. See: kfbox serve get {name}")

    async def _cold_start(self, pool: ReplicaPool, namespace: str, name: str) -> Any:
        cold = not pool.replicas
        waited = time.perf_counter()
        replica = await pool.wait_ready(self.manager.settings.serving_cold_start_timeout, self.manager.wake)
        if replica is not None and cold:
            self.manager.metrics.cold_starts.labels(namespace, name).inc()
            self.manager.metrics.cold_start_seconds.labels(namespace, name).observe(time.perf_counter() - waited)
        return replica


async def relay(connection: Connection, pool: ReplicaPool, port: int, receive: Receive, send: Send,
                revision: str) -> int:
    """The replica's reply to the client: whole when it has all arrived, else piece by piece as it comes."""
    status = connection.status
    if status >= 400:
        try:
            content = kserve_error_body(await connection.read_all(REQUEST_TIMEOUT))
        except UpstreamError as exc:
            return await reply_error(send, 502, f"Replica of {revision} failed during its reply: {exc}")
        headers = [(k, v) for k, v in connection.headers if k not in DROP_RESPONSE and k != b"content-type"]
        pool.upstreams.release(port, connection)
        await send_reply(send, status, content, [*headers, (b"x-kfbox-revision", revision.encode()), JSON])
        return status
    headers = [(k, v) for k, v in connection.headers if k not in DROP_RESPONSE]
    headers.append((b"x-kfbox-revision", revision.encode()))
    length = next((v for k, v in connection.headers if k == b"content-length"), None)
    if length is not None:
        headers.append((b"content-length", length))
    whole = connection.take_body()
    if whole is not None:  # the usual small reply: it came with the head
        pool.upstreams.release(port, connection)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": whole})
        return status
    await send({"type": "http.response.start", "status": status, "headers": headers})
    gone = asyncio.ensure_future(receive())  # completes when the client hangs up

    def hung_up(future: asyncio.Future[Message]) -> None:
        if not future.cancelled():
            connection.close()  # the replica sees its client leave too (a generate loop stops)

    gone.add_done_callback(hung_up)
    try:
        while (chunk := await connection.next_chunk(REQUEST_TIMEOUT)) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except (UpstreamError, TimeoutError) as exc:
        connection.close()
        if gone.done():
            return status
        # the status line is out: only closing the client's connection tells it the reply is cut short
        raise StreamBroken(f"{revision}: the reply broke off: {exc}") from exc
    finally:
        gone.cancel()
    pool.upstreams.release(port, connection)
    await send({"type": "http.response.body", "body": b""})
    return status


class StreamBroken(Exception):
    """A replica's reply broke after its head was relayed; uvicorn closes the client's connection."""


def request_head(scope: Scope, rest: str, length: int) -> tuple[bytes, bytes]:
    """The request line and the headers for the replica; its ``host`` line goes between them."""
    query: bytes = scope.get("query_string", b"")
    target = rest if PLAIN_PATH.fullmatch(rest) else quote(rest, safe=PATH_SAFE)
    line = f"{scope['method']} {target}".encode() + (b"?" + query if query else b"")
    lines: list[bytes] = []
    for key, value in scope["headers"]:
        if key not in DROP_REQUEST:
            lines += [key, b": ", value, b"\r\n"]
    lines.append(b"content-length: " + str(length).encode() + b"\r\n\r\n")
    return line + b" HTTP/1.1\r\n", b"".join(lines)


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while message.get("more_body", False):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


def is_inference(path: str) -> bool:
    """V1 ``:predict`` and V2 ``/infer``: pure functions of the request, so safe to send twice."""
    path = path.split("?", 1)[0]
    return path.endswith(":predict") or path.endswith("/infer")


async def send_reply(send: Send, status: int, content: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    start: Message = {"type": "http.response.start", "status": status,
                      "headers": [*headers, (b"content-length", str(len(content)).encode())]}
    await send(start)
    await send({"type": "http.response.body", "body": content})


async def reply_error(send: Send, status: int, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> int:
    await send_reply(send, status, json.dumps({"error": message}).encode(), [JSON, *(headers or [])])
    return status
