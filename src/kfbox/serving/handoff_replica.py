"""A replica's side of the connection hand-off (``kfbox up --data-plane handoff``; :mod:`kfbox.serving.handoff`).

The server sends the replica one end of a ``SOCK_SEQPACKET`` pair over its warm channel (:func:`watch`); on it
come connections, each with the bytes the server read and a :class:`~kfbox.serving.handoff.Grant`. The replica
serves each with its own uvicorn protocol (:class:`Adopted`), which, before it feeds a request's bytes to the
parser, checks that the request is one kfbox would have sent here without a question (else it hands the connection
back with those bytes, unread, and kfbox's full stack answers) and takes the ``/serving/{namespace}/{name}`` prefix
off its target in those bytes, so the parser reads the path the replica serves. What else the gateway does to every
request it proxies, :class:`Edge` does here: the platform's credentials out of the headers the model sees,
``x-kfbox-revision`` on the reply, errors in KServe's body, and the counts kfbox's metrics and autoscaler read,
reported within half a second of a change (:class:`Stats`).

Pipelined requests wait in :attr:`Adopted.held` until the reply before them is complete, so each is checked,
and a connection is handed back only between two requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfbox.server import warm
from kfbox.server.coalesce import coalescing_protocol
from kfbox.server.protocol import headers_too_slow, too_many_connections
from kfbox.serving import handoff
from kfbox.serving.error_body import kserve_error_body

CREDENTIALS = frozenset({b"authorization", b"cookie", b"proxy-authorization"})
"""Headers the model never sees, as through kfbox's gateway."""
REPORT_SECONDS = 0.5
DRAIN_POLL_SECONDS = 0.005
READ_BYTES = 32 * 1024
"""The most a handed connection's read takes at once (the loop's own reads take up to 256 KiB)."""
HOLD_BYTES = handoff.MAX_MESSAGE_BYTES // 2
"""Unchecked bytes past which a busy handed connection stops reading: with one more read, what it holds still fits
in one message if the connection goes back to kfbox (:data:`kfbox.serving.handoff.MAX_MESSAGE_BYTES`)."""
JSON = (b"content-type", b"application/json")


class Stats:
    """What this replica served on handed connections since the last report, and what it holds now. A change
    schedules a report within ``REPORT_SECONDS`` (:meth:`touch`): none while nothing happens, no timer ticking."""

    def __init__(self, schedule: Callable[[], None] = lambda: None) -> None:
        self.schedule = schedule
        self.requests: dict[int, int] = {}
        self.latencies: list[float] = []
        self.inflight = 0
        self.reading = 0
        """Requests read on handed connections and not yet answered: the overload bound counts these (a model
        that computes on the event loop has one in flight at a time, the rest read and waiting)."""
        self.adopted = 0
        self.open = 0
        self.changed = False

    def touch(self) -> None:
        if not self.changed:
            self.changed = True
            self.schedule()

    def served(self, status: int, seconds: float) -> None:
        self.requests[status] = self.requests.get(status, 0) + 1
        self.latencies.append(round(seconds, 6))
        self.touch()

    def report(self) -> dict[str, Any] | None:
        """The news since the last report that reached the server (:meth:`delivered`), or None."""
        if not self.changed:
            return None
        return {"requests": self.requests, "latencies": self.latencies, "inflight": self.inflight,
                "adopted": self.adopted, "open": self.open}

    def delivered(self) -> None:
        self.requests, self.latencies, self.changed = {}, [], False


class Edge:
    """The gateway's per-request work, for requests on a handed connection (module docstring)."""

    def __init__(self, app: ASGIApp, grant: handoff.Grant, stats: Stats) -> None:
        self.app = app
        self.grant = grant
        self.revision = (b"x-kfbox-revision", grant.revision.encode())
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in CREDENTIALS]
        stats = self.stats
        stats.inflight += 1
        stats.touch()
        started = time.perf_counter()
        reply = Reply(send, self.revision)
        try:
            await self.app(scope, receive, reply.send)
        finally:
            stats.inflight -= 1
            stats.served(reply.status, time.perf_counter() - started)

    async def refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The gateway's overload answer, at once: 503, ``retry-after: 1``, KServe's body."""
        waiting = self.stats.reading
        body = json.dumps({"error": f"InferenceService {self.grant.service} is overloaded: {waiting} requests are "
                                    f"waiting for {self.grant.revision}. Retry shortly, or raise maxReplicas."})
        await send({"type": "http.response.start", "status": 503,
                    "headers": [JSON, (b"retry-after", b"1"), (b"content-length", str(len(body)).encode()),
                                self.revision]})
        await send({"type": "http.response.body", "body": body.encode()})
        self.stats.served(503, 0.0)


class Reply:
    """The reply as the gateway relays it: ``x-kfbox-revision`` added, an error's body reshaped to KServe's."""

    __slots__ = ("downstream", "parts", "revision", "start", "status")

    def __init__(self, downstream: Send, revision: tuple[bytes, bytes]) -> None:
        self.downstream = downstream
        self.revision = revision
        self.status = 500
        self.start: Message | None = None
        self.parts: list[bytes] = []

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            headers = [*message.get("headers", ()), self.revision]
            if self.status < 400:
                await self.downstream({**message, "headers": headers})
                return
            self.start = {**message, "headers": [(k, v) for k, v in headers
                                                 if k not in (b"content-length", b"content-type")]}
            return
        if self.start is None or kind != "http.response.body":
            await self.downstream(message)
            return
        self.parts.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = kserve_error_body(b"".join(self.parts))
        start, self.start = self.start, None
        await self.downstream({**start, "headers": [*start["headers"], JSON,
                                                    (b"content-length", str(len(body)).encode())]})
        await self.downstream({"type": "http.response.body", "body": body})


class Receiver:
    """The replica's hand-off socket, read on the event loop: each message one connection to serve."""

    def __init__(self, sock: socket.socket, rest_server: Any) -> None:
        self.sock = sock
        self.rest_server = rest_server
        self.loop = asyncio.get_running_loop()
        self.stats = Stats(self.schedule)
        self.pending: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self.read)
        self.base: Any = adopted_protocol()
        self.by_client: dict[str, int] = {}
        """Handed connections open, by client address (the server's cap per address, kept here)."""

    def read(self) -> None:
        while True:
            try:
                got = handoff.receive(self.sock)
            except EOFError:  # the server is gone: the warm channel's end stops this process too
                self.loop.remove_reader(self.sock.fileno())
                if self.pending is not None:
                    self.pending.cancel()
                self.sock.close()
                return
            if got is None:
                return
            message, data, fd = got
            if fd is None:
                continue
            grant = message.get("connection")
            if not isinstance(grant, dict):
                os.close(fd)
                continue
            self.serve(socket.socket(fileno=fd), handoff.Grant.from_json(grant), data)

    def serve(self, sock: socket.socket, grant: handoff.Grant, data: bytes) -> None:
        server = self.rest_server._server  # kserve's uvicorn.Server: its config and state, as its own listener's
        if server.should_exit:  # stopping: kfbox serves it, as it will the connections this replica held
            self.hand_back(sock, data)  # if the server is gone too, closing is all there is to do
            sock.close()
            return
        config = server.config
        edge = Edge(config.loaded_app, grant, self.stats)

        def protocol() -> Any:
            adopted = self.base(config=config, server_state=server.server_state, app_state=server.lifespan.state)
            adopted.app = adopted.edge = edge
            adopted.receiver, adopted.grant, adopted.held = self, grant, data
            return adopted

        task = self.loop.create_task(self.loop.connect_accepted_socket(protocol, sock))
        task.add_done_callback(lambda t: _close_unless_served(t, sock))

    def hand_back(self, sock: socket.socket, data: bytes) -> bool:
        return handoff.send(self.sock, {"back": {}}, data, sock.fileno())

    def schedule(self) -> None:
        if self.pending is None:
            self.pending = self.loop.call_later(REPORT_SECONDS, self.report)

    def report(self) -> None:
        self.pending = None
        report = self.stats.report()
        if report is None:
            return
        if handoff.send(self.sock, {"report": report}):
            self.stats.delivered()
        else:  # the server's side is full (or gone): all of it in the next one
            self.schedule()


def adopted_protocol() -> Any:
    """The replica's own uvicorn protocol, checking each request of a handed connection before it reads it."""
    base: Any = coalescing_protocol()

    class Adopted(base, asyncio.BufferedProtocol):  # type: ignore[misc]
        receiver: Receiver
        grant: handoff.Grant
        edge: Edge
        held = b""
        """Bytes of requests not yet checked: the next request's, or what came after the one in progress."""
        remaining = 0
        """Body bytes of the request in progress still to come."""
        busy = False
        """A request was fed whose reply is not complete."""
        late: asyncio.TimerHandle | None = None
        """The read deadline of a request that is still arriving (slowloris), as the server's protocol keeps."""
        leaving = False
        """The replica is stopping: the connection goes back to kfbox after the reply in progress."""
        last: tuple[bytes, handoff.Head, bytes] | None = None
        """The last head let through: its bytes, what they say, and as the parser reads them (prefix off)."""
        throttled = False
        """Reading paused: the unchecked bytes held reached :data:`HOLD_BYTES` while a request is in progress."""
        buffer: memoryview

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self.buffer = memoryview(bytearray(READ_BYTES))
            super().connection_made(transport)
            stats = self.receiver.stats
            stats.adopted += 1
            stats.open += 1
            stats.touch()
            address = self.client[0] if self.client else ""
            count = self.receiver.by_client[address] = self.receiver.by_client.get(address, 0) + 1
            if self.grant.per_client and count > self.grant.per_client:
                self.transport.write(too_many_connections(self.grant.per_client))
                self.transport.close()
                return
            self.next_request()
            self.throttle()

        def get_buffer(self, sizehint: int) -> memoryview:
            return self.buffer  # reads of READ_BYTES at most: what is held stays small enough to give back

        def buffer_updated(self, nbytes: int) -> None:
            self.data_received(bytes(self.buffer[:nbytes]))

        def connection_lost(self, exc: Exception | None) -> None:
            self.deadline(0)
            self.done()
            address = self.client[0] if self.client else ""
            left = self.receiver.by_client.get(address, 1) - 1
            if left > 0:
                self.receiver.by_client[address] = left
            else:
                self.receiver.by_client.pop(address, None)
            stats = self.receiver.stats
            stats.open -= 1
            stats.touch()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.remaining:
                body, data = data[:self.remaining], data[self.remaining:]
                self.remaining -= len(body)
                self.deadline(self.grant.body_timeout if self.remaining else 0)
                super().data_received(body)
                if not data:
                    return
            self.held += data
            self.next_request()
            self.throttle()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.done()
            if self.held or self.leaving:
                self.next_request()
            self.throttle()

        def throttle(self) -> None:
            """Stop reading while a request is in progress and the bytes after it reach :data:`HOLD_BYTES`; read
            again once it is answered (a client that pipelines far ahead waits for its replies)."""
            if self.busy and len(self.held) >= HOLD_BYTES:
                if not self.transport.is_closing():  # again if uvicorn's flow control resumed it meanwhile
                    self.throttled = True
                    self.transport.pause_reading()
            elif self.throttled:
                self.throttled = False
                if not self.flow.read_paused and not self.transport.is_closing():
                    self.transport.resume_reading()

        def shutdown(self) -> None:
            """The replica is stopping (scaled down, deleted, replaced): instead of closing the connection under a
            keep-alive client, as uvicorn does, hand it back to kfbox, now if idle, else after its reply."""
            self.leaving = True
            if not self.busy:
                self.give_back()

        def done(self) -> None:
            if self.busy:
                self.busy = False
                self.receiver.stats.reading -= 1

        def next_request(self) -> None:
            if self.leaving:
                if not self.busy:
                    self.loop.call_soon(self.give_back)  # after the reply that may have just completed is written
                return
            if self.busy or not self.held or self.transport.is_closing():
                return
            held = self.held
            size = held.find(b"\r\n\r\n", 0, handoff.MAX_HEAD_BYTES) + 4
            if size > 3 and self.last is not None and held[:size] == self.last[0]:  # a client repeats its head
                _, head, line = self.last
            else:
                read = handoff.read_head(held)
                if read is None or not self.grant.allows(read):
                    if size < 4 and len(held) < handoff.MAX_HEAD_BYTES:
                        if self.late is None:
                            self.deadline(self.grant.header_timeout)  # the head is still arriving
                        return
                    self.deadline(0)
                    self.loop.call_soon(self.give_back)  # after the reply that may have just completed is written
                    return
                # the replica serves /v1/..., not /serving/{namespace}/{name}/v1/...
                head, line = read, read.without_prefix(held[:size], self.grant.prefix)
                self.last = (held[:size], head, line)
            end = size + head.content_length
            body, self.held = held[size:end], held[end:]
            self.remaining = head.content_length - len(body)
            request = line + body
            self.deadline(self.grant.body_timeout if self.remaining else 0)
            stats = self.receiver.stats
            over = self.grant.queue and stats.reading >= self.grant.queue
            self.app = self.edge.refuse if over else self.edge  # read by uvicorn as the head completes
            self.busy = True
            stats.reading += 1
            super().data_received(request)

        def deadline(self, seconds: float) -> None:
            """Close the connection unless what it is sending arrives within ``seconds`` (0: no deadline)."""
            if self.late is not None:
                self.late.cancel()
                self.late = None
            if seconds > 0:
                self.late = self.loop.call_later(seconds, self.overdue)

        def overdue(self) -> None:
            self.late = None
            if self.remaining and self.flow.read_paused:  # the app is behind, not the client: wait for it
                self.deadline(self.grant.body_timeout)
                return
            if not self.transport.is_closing():
                if not self.busy:  # never in the middle of a reply
                    self.transport.write(headers_too_slow(self.grant.header_timeout))
                self.transport.close()

        def give_back(self) -> None:
            """Hand the connection back to the server with the unread bytes, once every byte of the replies before
            them is out (the last reply's leaves after its request completes: :mod:`kfbox.server.coalesce`); close
            it if the server cannot take it."""
            if self.transport.is_closing():
                return
            if self.transport.get_write_buffer_size():  # a large reply still draining: rare, so polled
                self.loop.call_later(DRAIN_POLL_SECONDS, self.give_back)
                return
            data, self.held = self.held, b""
            sock = self.transport.get_extra_info("socket")
            if sock is None or not self.receiver.hand_back(sock, data):
                self.transport.close()
                return
            self.transport.abort()  # closes this process's descriptor only: the server holds the connection now

    return Adopted


def _close_unless_served(task: asyncio.Task[Any], sock: socket.socket) -> None:
    """A connection the loop could not take (e.g. closed by the client meanwhile) is closed, not leaked."""
    if task.cancelled() or task.exception() is not None:
        sock.close()


# --- the warm channel ---------------------------------------------------------------------------------------------
_lock = threading.Lock()
_waiting: list[socket.socket] = []
_started: list[Any] = []
"""The running REST server and its loop, once :func:`serve_on` ran."""


def watch(channel: warm.Channel) -> threading.Thread:
    """A daemon thread reading the server's warm channel: a hand-off socket when it comes; at the channel's end
    (the server stopped or died) the process exits, as :func:`kfbox.server.warm.exit_when_parent_closes`."""
    def run() -> None:
        while (got := channel.recv_with_fd()) is not None:
            message, fd = got
            if fd is None:
                continue
            if "handoff" not in message:
                os.close(fd)
                continue
            _arrived(socket.socket(fileno=fd))
        os._exit(0)

    thread = threading.Thread(target=run, name="kfbox-parent-watch", daemon=True)
    thread.start()
    return thread


def _arrived(sock: socket.socket) -> None:
    with _lock:
        if not _started:
            _waiting.append(sock)
            return
        rest_server, loop = _started
    loop.call_soon_threadsafe(Receiver, sock, rest_server)


def serve_on(rest_server: Any) -> None:
    """On the replica's event loop, as its REST server starts: serve the connections the server hands over."""
    loop = asyncio.get_running_loop()
    with _lock:
        _started[:] = [rest_server, loop]
        waiting, _waiting[:] = list(_waiting), []
    for sock in waiting:
        Receiver(sock, rest_server)
